"""An in-memory GitHub and a scripted model, for direct tests of the job runners.

:class:`InMemoryGitHub` implements :class:`reviewbot.runners.ports.GitHubPort` the
way the production :class:`reviewbot.github.client.GitHubClient` behaves against
GitHub: unknown pulls, files and comments are 404s, reactions are per app and
content (adding one twice returns the same id), replies need their reply marker and
go to the thread's root, inline comments outside the PR's diff are refused with a
422 and then moved into the review body as the client does. Like the client, only
what the App's own account (:data:`IDENTITY`) wrote counts as reviewbot's: ``markers``
reads its reviews and comments alone, ``CommentInfo.by_reviewbot`` marks its comments.
Tests set up state with ``add_*``/``set_*``, inject failures with
:meth:`InMemoryGitHub.fail`, and assert on the write logs (``reviews``, ``replies``,
``reaction_log``, ``check_runs``); ``gh.locks`` is a pull-request lock that logs
``lock``/``unlock`` into ``gh.calls``.

:class:`ScriptedModel` is a ``ModelPort`` whose completions come from a function of
the prompt; its :meth:`~ScriptedModel.engines` is the runners' ``EngineProvider``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from reviewbot.github.data import BotIdentity, CommentInfo, PullInfo, ReactionInfo, ThreadInfo
from reviewbot.github.errors import GitHubError
from reviewbot.github.markers import Markers, parse_markers, reply_marker
from reviewbot.github.payload import (
    ReviewPayload,
    clip_text,
    move_comments_to_body,
    unplaceable_comments,
)
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.hunks import Hunk, parse_patch
from reviewbot.review.prompts import Renderer
from reviewbot.runners.ports import GitHubPort, LocalPullLocks, ModelPort, PullLocks
from reviewbot.settings.defaults import (
    CHECK_RUN_CONCLUSIONS,
    CHECK_RUN_SUMMARY_MAX_CHARS,
    CHECK_RUN_TITLE_MAX_CHARS,
    COMMENT_BODY_MAX_CHARS,
    NO_FINDING_ANSWER,
)
from reviewbot.settings.repo import RepoConfig, parse_repo_config


def user_id(login: str) -> int:
    """A stable user id per login (GitHub's ids never change with the account)."""
    return int.from_bytes(hashlib.sha256(login.lower().encode()).digest()[:4], "big")


#: The App's own login: what it posts is authored by this bot.
BOT = "reviewbot[bot]"
BOT_ID = user_id(BOT)
#: reviewbot's own account: only what it wrote counts as reviewbot's.
IDENTITY = BotIdentity(BOT, BOT_ID)

PR = tuple[str, int]


@dataclass
class PostedReview:
    """A review on a pull request: its body and its inline comments (with ids)."""

    id: int
    repo: str
    number: int
    commit_id: str
    body: str
    event: str
    comments: list[CommentInfo]
    author: str = BOT
    """Who submitted the review (the App, unless a test says otherwise)."""


@dataclass(frozen=True)
class Reply:
    """A reply the App posted: ``comment_id`` is the comment it answers."""

    id: int
    repo: str
    number: int
    comment_type: str
    comment_id: int
    body: str
    in_reply_to: int | None = None
    """The review thread's root (review replies only)."""


@dataclass
class CheckRun:
    """The "reviewbot" check run; ``conclusion`` etc. are set when completed."""

    id: int
    repo: str
    head_sha: str
    external_id: str = ""
    status: str = "in_progress"
    conclusion: str | None = None
    title: str = ""
    summary: str = ""


def file_hunks(diff: str) -> dict[str, list[Hunk]]:
    """Each file's hunks in a git diff, by repository path (what ``/pulls/{n}/files`` gives).

    Paths are read by the planner (git's quoted names unquoted); hunks by the one
    hunk parser.
    """
    sections: list[list[str]] = []
    for line in diff.split("\n"):
        if line.startswith("diff --git ") or not sections:
            sections.append([])
        sections[-1].append(line)
    found: dict[str, list[Hunk]] = {}
    for lines in sections:
        text = "\n".join(lines)
        files = plan_diff(text).files if text.strip() else ()
        if files:
            found[files[0]] = parse_patch(text)
    return found


class InMemoryGitHub:
    """One installation's view of GitHub, in memory (see the module docstring)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1001)
        self._pulls: dict[PR, PullInfo] = {}
        self._diffs: dict[PR, str] = {}
        self._compares: dict[tuple[str, str, str], str] = {}
        self._files: dict[tuple[str, str, str], str] = {}
        self._configs: dict[str, str] = {}
        self._roles: dict[tuple[str, str], str] = {}
        self._reviews: dict[PR, list[PostedReview]] = {}
        self._review_comments: dict[PR, list[CommentInfo]] = {}
        self._issue_comments: dict[PR, list[CommentInfo]] = {}
        self._reactions: dict[tuple[str, str, int], dict[str, int]] = {}
        self._failures: dict[str, list[Exception]] = {}
        self.resolved: set[int] = set()
        self.resolved_by: dict[int, str] = {}
        """Root comment ids of the review threads someone resolved."""
        self.reject_inline_once = False
        """Refuse the next review POST that has inline comments with a 422, as GitHub
        sometimes does for comments it should be able to place."""
        # -- what was called and written (for assertions) --
        self.calls: list[str] = []
        self.reviews: list[PostedReview] = []
        self.rejected: list[dict[str, Any]] = []
        """Review bodies GitHub refused (422)."""
        self.replies: list[Reply] = []
        self.reaction_log: list[tuple[str, str, int, str]] = []
        """("add" | "remove", comment type, comment id, content), in order."""
        self.check_runs: list[CheckRun] = []
        self.locks: PullLocks = RecordingPullLocks(self.calls)
        """A pull-request lock for the runners that logs "lock"/"unlock" into ``calls``."""

    # -- setting up ----------------------------------------------------------------------

    def add_pull(self, repo: str, number: int, head_sha: str, diff: str, **fields: Any) -> PullInfo:
        """An open, non-draft pull request at ``head_sha`` whose diff is ``diff``."""
        defaults: dict[str, Any] = dict(
            title=f"PR {number}",
            base_sha="0" * 40,
            draft=False,
            state="open",
            author="octocat",
            author_type="User",
            default_branch="main",
        )
        pull = PullInfo(number=number, head_sha=head_sha, **(defaults | fields))
        self._pulls[repo, number] = pull
        self._diffs[repo, number] = diff
        return pull

    def update_pull(self, repo: str, number: int, diff: str | None = None, **fields: Any) -> None:
        """Change a pull request (a push: ``head_sha`` and ``diff``; ``state``, ``draft``)."""
        self._pulls[repo, number] = replace(self._pulls[repo, number], **fields)
        if diff is not None:
            self._diffs[repo, number] = diff

    def add_compare(self, repo: str, base_sha: str, head_sha: str, diff: str) -> None:
        self._compares[repo, base_sha, head_sha] = diff

    def add_file(self, repo: str, ref: str, path: str, text: str) -> None:
        self._files[repo, ref, path] = text

    def set_config(self, repo: str, text: str) -> None:
        """The repository's ``.github/reviewbot.toml`` on its default branch."""
        self._configs[repo] = text

    def set_role(self, repo: str, login: str, role: str) -> None:
        self._roles[repo, login] = role

    def add_issue_comment(
        self, repo: str, number: int, body: str, login: str = "octocat", author_type: str = "User"
    ) -> int:
        """A comment in the PR's conversation tab; returns its id."""
        comment = CommentInfo(
            next(self._ids),
            login,
            author_type,
            body,
            author_id=user_id(login),
            by_reviewbot=IDENTITY.is_account(login, user_id(login)),
        )
        self._issue_comments.setdefault((repo, number), []).append(comment)
        return comment.id

    def add_review_comment(
        self,
        repo: str,
        number: int,
        body: str,
        login: str = "octocat",
        *,
        path: str | None = None,
        line: int | None = None,
        start_line: int | None = None,
        side: str = "RIGHT",
        in_reply_to: int | None = None,
        author_type: str = "User",
    ) -> int:
        """An inline review comment (a reply takes its root's place); returns its id."""
        if in_reply_to is not None:
            root = self._review_comment(repo, number, in_reply_to)
            path, line, start_line, side = root.path, root.line, root.start_line, root.side or side
        assert path is not None, "a thread's first comment needs a path"
        comment = CommentInfo(
            id=next(self._ids),
            author=login,
            author_type=author_type,
            body=body,
            path=path,
            line=line,
            start_line=start_line,
            side=side,
            in_reply_to=in_reply_to,
            commit_id=self._pulls[repo, number].head_sha,
            diff_hunk=self._diff_hunk(repo, number, path, line, side),
            author_id=user_id(login),
            by_reviewbot=IDENTITY.is_account(login, user_id(login)),
        )
        self._review_comments.setdefault((repo, number), []).append(comment)
        return comment.id

    def add_review(
        self, repo: str, number: int, body: str, commit_id: str = "", login: str = BOT
    ) -> int:
        """An earlier review (by the App unless ``login`` says; not logged as a write)."""
        review = PostedReview(
            next(self._ids), repo, number, commit_id, body, "COMMENT", [], author=login
        )
        self._reviews.setdefault((repo, number), []).append(review)
        return review.id

    def fail(self, method: str, error: Exception, times: int = 1) -> None:
        """Make the next ``times`` calls of port method ``method`` raise ``error``."""
        if method not in PORT_METHODS:
            raise ValueError(f"{method!r} is not a GitHubPort method")
        self._failures.setdefault(method, []).extend([error] * times)

    # -- reading back --------------------------------------------------------------------

    def reactions_on(self, repo: str, comment_type: str, comment_id: int) -> set[str]:
        """The App's reactions now on a comment."""
        return set(self._reactions.get((repo, comment_type, comment_id), {}))

    def comment(self, repo: str, number: int, comment_id: int) -> CommentInfo:
        """A review or issue comment by id."""
        comments = [*self._review_comments.get((repo, number), [])]
        comments += self._issue_comments.get((repo, number), [])
        return next(c for c in comments if c.id == comment_id)

    # -- GitHubPort: the pull request ----------------------------------------------------

    def pull(self, repo: str, number: int) -> PullInfo:
        self._enter("pull")
        return self._pull(repo, number)

    def pull_diff(self, repo: str, number: int) -> str:
        self._enter("pull_diff")
        self._pull(repo, number)
        return self._diffs[repo, number]

    def compare_diff(self, repo: str, base_sha: str, head_sha: str) -> str:
        self._enter("compare_diff")
        if (repo, base_sha, head_sha) not in self._compares:
            raise GitHubError(f"GET /repos/{repo}/compare/{base_sha}...{head_sha}: 404", 404)
        return self._compares[repo, base_sha, head_sha]

    def repo_config(self, repo: str) -> RepoConfig:
        self._enter("repo_config")
        return parse_repo_config(self._configs.get(repo))

    def file_text(self, repo: str, path: str, ref: str) -> str:
        self._enter("file_text")
        if (repo, ref, path) not in self._files:
            raise GitHubError(f"GET /repos/{repo}/contents/{path}?ref={ref[:7]}: 404", 404)
        return self._files[repo, ref, path]

    # -- GitHubPort: what was said before ------------------------------------------------

    def markers(self, repo: str, number: int, conversation: bool = False) -> Markers:
        self._enter("markers")
        self._pull(repo, number)
        found = Markers()
        reviews = self._reviews.get((repo, number), [])
        texts = [r.body for r in reviews if IDENTITY.is_account(r.author, user_id(r.author))]
        comments = [*self._review_comments.get((repo, number), [])]
        if conversation:
            comments += self._issue_comments.get((repo, number), [])
        texts += [c.body for c in comments if c.by_reviewbot]
        for text in texts:
            found |= parse_markers(text)
        return found

    def review_comments(self, repo: str, number: int) -> list[CommentInfo]:
        self._enter("review_comments")
        self._pull(repo, number)
        return sorted(self._review_comments.get((repo, number), []), key=lambda c: c.id)

    def issue_comments(self, repo: str, number: int) -> list[CommentInfo]:
        self._enter("issue_comments")
        self._pull(repo, number)
        return sorted(self._issue_comments.get((repo, number), []), key=lambda c: c.id)

    def review_thread(self, repo: str, number: int, comment_id: int) -> list[CommentInfo]:
        self._enter("review_thread")
        root = self._review_comment(repo, number, comment_id).in_reply_to or comment_id
        comments = sorted(self._review_comments[repo, number], key=lambda c: c.id)
        return [c for c in comments if root in (c.id, c.in_reply_to)]

    def unresolved_threads(self, repo: str, number: int) -> set[int]:
        """Roots of the threads neither resolved nor outdated (``line`` None)."""
        self._enter("unresolved_threads")
        self._pull(repo, number)
        return {
            c.id
            for c in self._review_comments.get((repo, number), [])
            if c.in_reply_to is None and c.line is not None and c.id not in self.resolved
        }

    def review_threads(self, repo: str, number: int) -> list[ThreadInfo]:
        """Every thread: resolved ones by who resolved them (``resolved_by``)."""
        self._enter("review_threads")
        self._pull(repo, number)
        return [
            ThreadInfo(
                c.id,
                c.id in self.resolved,
                c.line is None,
                self.resolved_by.get(c.id),
                node_id=f"T_{c.id}",
            )
            for c in self._review_comments.get((repo, number), [])
            if c.in_reply_to is None
        ]

    def reactions(self, repo: str, comment_type: str, comment_id: int) -> list[ReactionInfo]:
        """The App's own reactions on a comment (the only ones this GitHub keeps)."""
        self._enter("reactions")
        mine = self._reactions.get(self._comment_key(repo, comment_type, comment_id), {})
        return [ReactionInfo(rid, content, BOT, "Bot") for content, rid in mine.items()]

    def resolve_thread(self, repo: str, thread_id: str) -> None:
        """Resolve the thread of GraphQL id ``thread_id`` (``T_{root id}``) as reviewbot."""
        self._enter("resolve_thread")
        root = int(thread_id.removeprefix("T_"))
        self.resolved.add(root)
        self.resolved_by[root] = BOT

    def update_pull_body(self, repo: str, number: int, body: str) -> None:
        self._enter("update_pull_body")
        self._pulls[repo, number] = replace(self._pull(repo, number), body=body)

    def post_comment(self, repo: str, number: int, body: str, marker: str) -> int:
        """reviewbot's own comment in the conversation (idempotent by ``marker``)."""
        self._enter("post_comment")
        self._pull(repo, number)
        mine = self._issue_comments.get((repo, number), [])
        found = next((c.id for c in mine if c.by_reviewbot and marker in c.body), None)
        if found is not None:
            return found
        return self.add_issue_comment(repo, number, body, BOT, "Bot")

    def role(self, repo: str, login: str) -> str:
        self._enter("role")
        return self._roles.get((repo, login), "none")

    # -- GitHubPort: what a job posts ----------------------------------------------------

    def post_review(self, repo: str, number: int, payload: ReviewPayload) -> int:
        """Post like the client: a 422 moves the unplaceable comments (else all) into the
        body, once found against the PR's file patches, and posts again."""
        self._enter("post_review")
        current, checked = payload, False
        while True:
            try:
                return self._post_review_json(repo, number, current.to_json())
            except GitHubError as e:
                if e.status != 422 or not current.inline:
                    raise
                patches = {p: _patch(hs) for p, hs in self._file_hunks(repo, number).items()}
                bad = [] if checked else unplaceable_comments(current.inline, patches)
                checked = True
                current = move_comments_to_body(current, bad or range(len(current.inline)))

    def reply(self, repo: str, number: int, comment_type: str, comment_id: int, body: str) -> int:
        self._enter("reply")
        text = clip_text(body, COMMENT_BODY_MAX_CHARS)
        if reply_marker(comment_id) not in text:
            raise ValueError("a reply must carry the reply marker of the comment it answers")
        self._pull(repo, number)
        if comment_type == "review":
            root = self._review_comment(repo, number, comment_id).in_reply_to or comment_id
            reply_id = self.add_review_comment(
                repo, number, text, BOT, in_reply_to=root, author_type="Bot"
            )
        else:  # the conversation: GitHub takes a new issue comment
            root = None
            reply_id = self.add_issue_comment(repo, number, text, BOT, author_type="Bot")
        self.replies.append(Reply(reply_id, repo, number, comment_type, comment_id, text, root))
        return reply_id

    def add_reaction(self, repo: str, comment_type: str, comment_id: int, content: str) -> int:
        self._enter("add_reaction")
        mine = self._reactions.setdefault(self._comment_key(repo, comment_type, comment_id), {})
        if content not in mine:  # GitHub returns the App's existing reaction
            mine[content] = next(self._ids)
            self.reaction_log.append(("add", comment_type, comment_id, content))
        return mine[content]

    def remove_reaction(
        self, repo: str, comment_type: str, comment_id: int, reaction_id: int
    ) -> None:
        self._enter("remove_reaction")
        mine = self._reactions.get(self._comment_key(repo, comment_type, comment_id), {})
        for content, rid in list(mine.items()):
            if rid == reaction_id:  # already gone is fine
                del mine[content]
                self.reaction_log.append(("remove", comment_type, comment_id, content))

    def swap_reaction(
        self, repo: str, comment_type: str, comment_id: int, old: str, new: str | None
    ) -> None:
        self._enter("swap_reaction")
        old_id = self.add_reaction(repo, comment_type, comment_id, old)
        self.remove_reaction(repo, comment_type, comment_id, old_id)
        if new is not None:
            self.add_reaction(repo, comment_type, comment_id, new)

    def find_check_run(self, repo: str, head_sha: str, external_id: str) -> int | None:
        self._enter("find_check_run")
        ids = [
            r.id
            for r in self.check_runs
            if (r.repo, r.head_sha, r.external_id) == (repo, head_sha, external_id)
            and r.status != "completed"
        ]
        return max(ids, default=None)

    def start_check_run(self, repo: str, head_sha: str, external_id: str) -> int:
        self._enter("start_check_run")
        run = CheckRun(next(self._ids), repo, head_sha, external_id)
        self.check_runs.append(run)
        return run.id

    def complete_check_run(
        self, repo: str, check_id: int, conclusion: str, title: str, summary: str
    ) -> None:
        self._enter("complete_check_run")
        if conclusion not in CHECK_RUN_CONCLUSIONS:
            raise ValueError(f"unknown check run conclusion {conclusion!r}")
        run = next((r for r in self.check_runs if (r.repo, r.id) == (repo, check_id)), None)
        if run is None:
            raise GitHubError(f"PATCH /repos/{repo}/check-runs/{check_id}: 404", 404)
        run.status, run.conclusion = "completed", conclusion
        run.title = clip_text(title, CHECK_RUN_TITLE_MAX_CHARS)
        run.summary = clip_text(summary, CHECK_RUN_SUMMARY_MAX_CHARS)

    # -- plumbing --------------------------------------------------------------------------

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        queued = self._failures.get(method)
        if queued:
            raise queued.pop(0)

    def _pull(self, repo: str, number: int) -> PullInfo:
        if (repo, number) not in self._pulls:
            raise GitHubError(f"GET /repos/{repo}/pulls/{number}: GitHub answered 404", 404)
        return self._pulls[repo, number]

    def _review_comment(self, repo: str, number: int, comment_id: int) -> CommentInfo:
        for c in self._review_comments.get((repo, number), []):
            if c.id == comment_id:
                return c
        raise GitHubError(f"review comment {comment_id} is not on {repo}#{number}", 404)

    def _comment_key(self, repo: str, comment_type: str, comment_id: int) -> tuple[str, str, int]:
        """The key of an existing comment (ValueError for a bad type, 404 if unknown)."""
        if comment_type not in ("issue", "review"):
            raise ValueError(f"unknown comment type {comment_type!r}")
        store = self._issue_comments if comment_type == "issue" else self._review_comments
        if not any(c.id == comment_id for (r, _), cs in store.items() if r == repo for c in cs):
            raise GitHubError(f"{comment_type} comment {comment_id} not found on {repo}", 404)
        return repo, comment_type, comment_id

    def _file_hunks(self, repo: str, number: int) -> dict[str, list[Hunk]]:
        return file_hunks(self._diffs[repo, number])

    def _diff_hunk(self, repo: str, number: int, path: str, line: int | None, side: str) -> str:
        """GitHub's ``diff_hunk`` of a comment: its hunk up to the commented line."""
        for h in self._file_hunks(repo, number).get(path, []) if line is not None else []:
            numbers = h.new_numbers if side == "RIGHT" else h.old_numbers
            if line in numbers:
                end = numbers.index(line) + 1
                kinds_texts = zip(h.kinds[:end], h.texts[:end], strict=True)
                return "\n".join([h.header, *(k + t for k, t in kinds_texts)])
        return ""

    def _post_review_json(self, repo: str, number: int, body: dict[str, Any]) -> int:
        """``POST /pulls/{n}/reviews``: 422 unless every comment is on the PR's diff."""
        pull = self._pull(repo, number)
        hunks = self._file_hunks(repo, number)
        comments = body["comments"]
        off_diff = [c for c in comments if not _placeable(c, hunks.get(c["path"]))]
        forced = bool(comments) and self.reject_inline_once
        self.reject_inline_once &= not forced
        if off_diff or forced:
            self.rejected.append(body)
            raise GitHubError(
                f"POST /repos/{repo}/pulls/{number}/reviews: GitHub answered 422: "
                "Unprocessable Entity (Line could not be resolved)",
                422,
            )
        commit_id = body["commit_id"] or pull.head_sha
        review = PostedReview(
            next(self._ids), repo, number, commit_id, body["body"], body["event"], []
        )
        for c in comments:
            review.comments.append(
                CommentInfo(
                    id=next(self._ids),
                    author=BOT,
                    author_type="Bot",
                    author_id=BOT_ID,
                    by_reviewbot=True,
                    body=c["body"],
                    path=c["path"],
                    line=c["line"],
                    start_line=c.get("start_line"),
                    side=c["side"],
                    commit_id=review.commit_id,
                    diff_hunk=self._diff_hunk(repo, number, c["path"], c["line"], c["side"]),
                )
            )
        self._reviews.setdefault((repo, number), []).append(review)
        self._review_comments.setdefault((repo, number), []).extend(review.comments)
        self.reviews.append(review)
        return review.id


class RecordingPullLocks(LocalPullLocks):
    """Pull-request locks of one process that log "lock" and "unlock" into ``calls``."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    @contextmanager
    def hold(self, repo: str, number: int) -> Iterator[None]:
        with super().hold(repo, number):
            self.calls.append("lock")
            try:
                yield
            finally:
                self.calls.append("unlock")


def _placeable(comment: dict[str, Any], hunks: list[Hunk] | None) -> bool:
    """Whether GitHub can anchor a review comment (JSON) on a file's hunks."""
    if hunks is None:
        return False
    lines = {comment.get("start_line", comment["line"]), comment["line"]}
    return any(lines <= h.lines_on(comment["side"]) for h in hunks)


def _patch(hunks: Iterable[Hunk]) -> str:
    """A file's patch text (as ``GET /pulls/{n}/files`` gives it) from its hunks."""
    lines: list[str] = []
    for h in hunks:
        lines.append(h.header)
        lines += [k + t for k, t in zip(h.kinds, h.texts, strict=True)]
    return "\n".join(lines)


#: The methods of GitHubPort (what :meth:`InMemoryGitHub.fail` may fail).
PORT_METHODS = frozenset(
    name for name, value in vars(GitHubPort).items() if callable(value) and name[0] != "_"
)

#: The type checker's proof that the fake is a GitHubPort.
_: type[GitHubPort] = InMemoryGitHub


# -- the model ---------------------------------------------------------------------------

TASK_OPENINGS = {
    "critique": "Please critique the following codes",
    "revise": "Please revise the following codes",
    "summarise": "Please summarise the flaws",
    "ask": "Please answer the question",
}


def task_of(prompt: str) -> str:
    """Which task a prompt renders: critique, revise, summarise or ask."""
    return next(task for task, opening in TASK_OPENINGS.items() if opening in prompt)


_SECTION_ENDS = ("\n\nCOMMENT:\n", "\n\nREVISED:\n", "\n\nQUESTION:\n", "\n\nREVIEW GUIDELINES:\n")


def section(prompt: str, name: str) -> str:
    """The text of a prompt's ``NAME:`` section (ORIGINAL, COMMENT, CODE, QUESTION)."""
    start = prompt.index(f"{name}:\n") + len(name) + 2
    ends = [prompt.find(end, start) for end in (*_SECTION_ENDS, "\n\n### Response")]
    return prompt[start : min((e for e in ends if e >= 0), default=len(prompt))]


def sure(prompt: str, completion: str) -> float:
    """A scripted model's default scores: sure of every critique (mean log-probability
    0 per token) and never of "no issues", so every finding has a confidence of ~1."""
    return -20.0 if completion == NO_FINDING_ANSWER else 0.0


@dataclass
class ScriptedModel:
    """A ModelPort whose completion for each prompt is ``respond(prompt)``, and whose
    score (mean log-probability per token) of a completion is ``judge(prompt, completion)``."""

    respond: Callable[[str], str]
    renderer: Renderer = field(default_factory=lambda: Renderer("alpaca"))
    model_name: str = "scripted"
    adapter: str | None = None
    prompts: list[str] = field(default_factory=list)
    adapters: list[str | None] = field(default_factory=list)
    """The adapter names the runners asked for, in order."""
    judge: Callable[[str, str], float] = sure
    scored: list[tuple[str, str]] = field(default_factory=list)
    """Every (prompt, completion) pair scored, in order."""

    def generate(self, prompts: list[str]) -> list[str]:
        self.prompts.extend(prompts)
        return [self.respond(p) for p in prompts]

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        pairs = list(zip(prompts, completions, strict=True))
        self.scored.extend(pairs)
        return [self.judge(p, c) for p, c in pairs]

    def engines(self, adapter: str | None) -> ScriptedModel:
        """The runners' EngineProvider: this model, whatever the adapter."""
        self.adapters.append(adapter)
        return self

    def prompts_for(self, task: str) -> list[str]:
        return [p for p in self.prompts if task_of(p) == task]


_model: type[ModelPort] = ScriptedModel
