"""The GitHub REST and GraphQL calls reviewbot makes (PyGithub), with bounded retries.

Errors leave this module as :class:`~reviewbot.github.errors.GitHubError` or its
:class:`~reviewbot.github.errors.TransientGitHubError`, after a small, bounded number
of in-process attempts (:class:`~reviewbot.settings.defaults.GitHubSettings`).
PyGithub's own retries are off (``retry=None``) so every wait is bounded here and a
review POST is never blindly repeated. :class:`GitHubClient` is the production
implementation of :class:`reviewbot.runners.ports.GitHubPort`.

Only what reviewbot's own account wrote (:class:`~reviewbot.github.data.BotIdentity`)
counts as reviewbot's: its markers, its reviews, its replies. Anyone else's text,
another bot's included, is read as someone else's, whatever markers it carries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException, UnknownObjectException
from github.PullRequest import PullRequest
from github.Repository import Repository
from github.Requester import Requester

from reviewbot.github.data import BotIdentity, CommentInfo, PullInfo, ReactionInfo, ThreadInfo
from reviewbot.github.errors import (
    DiffTooLargeError,
    GitHubError,
    TransientGitHubError,
    header,
    retry_after_seconds,
)
from reviewbot.github.markers import Markers, parse_markers, reply_marker
from reviewbot.github.payload import (
    ReviewPayload,
    clip_text,
    move_comments_to_body,
    unplaceable_comments,
)
from reviewbot.settings.defaults import (
    CHECK_RUN_CONCLUSIONS,
    CHECK_RUN_SUMMARY_MAX_CHARS,
    CHECK_RUN_TITLE_MAX_CHARS,
    COMMENT_BODY_MAX_CHARS,
    DEFAULT_GITHUB_API_URL,
    REPO_CONFIG_PATH,
    GitHubSettings,
)
from reviewbot.settings.repo import RepoConfig, RepoConfigError, parse_repo_config

log = logging.getLogger(__name__)

T = TypeVar("T")

DIFF_MEDIA_TYPE = "application/vnd.github.diff"
_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_DEFAULT_SETTINGS = GitHubSettings()
#: Pages of a commit's check runs searched for a job's run (GitHub keeps at most 1000
#: runs of one name in a check suite).
_CHECK_RUN_PAGES = 10


def _error_text(data: Any) -> str:
    if not isinstance(data, dict):
        return str(data)[:300] if data else ""
    text = str(data.get("message") or "")
    details = []
    for err in data.get("errors") or []:
        if isinstance(err, dict):
            details.append(str(err.get("message") or err.get("code") or err))
        else:
            details.append(str(err))
    if details:
        text += f" ({'; '.join(details)})"
    return text


def classify(error: GithubException, what: str, settings: GitHubSettings) -> GitHubError:
    """The :class:`GitHubError` (transient or not) for a PyGithub exception."""
    status = error.status
    headers = error.headers or {}
    text = _error_text(error.data)
    said = str(error.data.get("message") or "") if isinstance(error.data, dict) else ""
    retry_after = retry_after_seconds(headers)
    message = f"{what}: GitHub answered {status}" + (f": {text}" if text else "")
    if status >= 500:
        return TransientGitHubError(message, retry_after, status)
    rate_limited = (
        status == 429
        or header(headers, "x-ratelimit-remaining") == "0"
        or retry_after is not None
        or Requester.isRateLimitError(said)
    )
    if status in (403, 429) and rate_limited:
        if retry_after is None and not Requester.isPrimaryRateLimitError(said):
            retry_after = settings.secondary_rate_limit_wait
        return TransientGitHubError(f"{message} (rate limited)", retry_after, status)
    if status == 406:
        return DiffTooLargeError(message, status)
    return GitHubError(message, status)


def _check_repo(full_name: str) -> str:
    if not _REPO_NAME.fullmatch(full_name):
        raise ValueError(f"not a repository full name (owner/name): {full_name!r}")
    return full_name


def _raw(obj: Any) -> dict[str, Any]:
    """A listed PyGithub object's JSON as received.

    ``raw_data`` would first GET each listed object again (PyGithub completes
    listed objects lazily): one request per comment instead of one per page.
    """
    return obj._rawData


def _comment_info(data: Mapping[str, Any], identity: BotIdentity) -> CommentInfo:
    user = data.get("user") or {}
    user_id = user.get("id")
    return CommentInfo(
        id=int(data["id"]),
        author=str(user.get("login") or ""),
        author_type=str(user.get("type") or ""),
        body=str(data.get("body") or ""),
        path=data.get("path"),
        line=data.get("line"),
        start_line=data.get("start_line"),
        side=data.get("side"),
        in_reply_to=data.get("in_reply_to_id"),
        commit_id=data.get("commit_id"),
        diff_hunk=str(data.get("diff_hunk") or ""),
        author_id=user_id if isinstance(user_id, int) else None,
        by_reviewbot=identity.is_author(user),
    )


def _comment_url(repo: str, comment_type: str, comment_id: int) -> str:
    if comment_type not in ("issue", "review"):
        raise ValueError(f"unknown comment type {comment_type!r}")
    where = "issues" if comment_type == "issue" else "pulls"
    return f"/repos/{_check_repo(repo)}/{where}/comments/{int(comment_id)}"


_RESOLVE_MUTATION = """
mutation($thread: ID!) {
  resolveReviewThread(input: {threadId: $thread}) { thread { id isResolved } }
}
"""

_THREADS_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $cursor) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id isResolved isOutdated resolvedBy { login }
          comments(first: 1) { nodes { databaseId } }
        }
      }
    }
  }
}
"""


def make_github(auth: Auth.Auth | None, base_url: str, settings: GitHubSettings) -> Github:
    """A PyGithub client with reviewbot's settings (``auth`` None: unauthenticated)."""
    return Github(
        auth=auth,
        base_url=base_url.rstrip("/"),
        timeout=settings.timeout_seconds,
        user_agent=settings.user_agent,
        per_page=settings.per_page,
        retry=None,
        seconds_between_requests=settings.seconds_between_requests or None,
        seconds_between_writes=settings.seconds_between_writes or None,
        lazy=True,
    )


#: reviewbot's own account, or how to learn it when first needed.
IdentitySource = BotIdentity | Callable[[], BotIdentity]


class GitHubClient:
    """The calls reviewbot makes, with bounded retries and clear errors.

    ``identity``: reviewbot's own account (or a function returning it, called once,
    when first needed); None: the account of the client's own token (``GET /user``,
    for a personal access token).
    """

    def __init__(
        self,
        gh: Github,
        settings: GitHubSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        identity: IdentitySource | None = None,
    ) -> None:
        self._gh = gh
        self.settings = settings or _DEFAULT_SETTINGS
        self._sleep = sleep
        self._identity_source = identity
        self._identity = identity if isinstance(identity, BotIdentity) else None

    @classmethod
    def from_token(
        cls,
        token: str,
        base_url: str = DEFAULT_GITHUB_API_URL,
        settings: GitHubSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        identity: IdentitySource | None = None,
    ) -> GitHubClient:
        """A client using a plain token (personal access or installation token).

        ``identity`` None: reviewbot is the token's own account (``GET /user``).
        """
        settings = settings or _DEFAULT_SETTINGS
        gh = make_github(Auth.Token(token), base_url, settings)
        return cls(gh, settings, sleep, identity)

    def __repr__(self) -> str:
        return f"GitHubClient(base_url={self._gh.requester.base_url!r})"

    def close(self) -> None:
        self._gh.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --

    def _call(
        self,
        what: str,
        fn: Callable[[], T],
        on_retry: Callable[[], T | None] | None = None,
    ) -> T:
        """``fn()``, retried on transient errors at most ``settings.attempts`` times.

        ``on_retry`` runs before each retry; a non-None result is returned
        instead of retrying (a POST that GitHub did apply despite the error).
        """
        s = self.settings
        for attempt in range(1, s.attempts + 1):
            try:
                return fn()
            except GithubException as e:
                err = classify(e, what, s)
                err.__cause__ = e
            except requests.RequestException as e:
                err = TransientGitHubError(f"{what}: network error ({type(e).__name__})")
                err.__cause__ = e
            if not isinstance(err, TransientGitHubError) or attempt >= s.attempts:
                raise err
            wait = err.retry_after
            if wait is None:
                wait = s.backoff_seconds * 2 ** (attempt - 1)
            if wait > s.max_wait_seconds:
                raise err
            log.warning("%s; retry %d of %d in %.1fs", err, attempt, s.attempts - 1, wait)
            self._sleep(wait)
            if on_retry is not None:
                done = on_retry()
                if done is not None:
                    return done
        raise AssertionError("unreachable")  # pragma: no cover

    def _repo(self, full_name: str) -> Repository:
        return self._gh.get_repo(_check_repo(full_name))

    def _get_json(self, url: str) -> dict[str, Any]:
        _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        return data

    # -- who is who --

    @property
    def identity(self) -> BotIdentity:
        """reviewbot's own account (learned once, on first use)."""
        if self._identity is None:
            source = self._identity_source
            self._identity = source() if callable(source) else self.account(None)
        return self._identity

    def app_slug(self) -> str:
        """The App's slug (``GET /app``); the client must authenticate as the App (JWT)."""
        data = self._call("GET /app", lambda: self._get_json("/app"))
        slug = data.get("slug")
        if not isinstance(slug, str) or not slug:
            raise GitHubError("GET /app: GitHub's answer has no slug")
        return slug

    def account(self, login: str | None) -> BotIdentity:
        """The account ``login`` (``GET /users/{login}``; None: the token's own, ``GET /user``)."""
        url = "/user" if login is None else f"/users/{quote(login, safe='')}"
        data = self._call(f"GET {url}", lambda: self._get_json(url))
        found, user_id = data.get("login"), data.get("id")
        if not isinstance(found, str) or not isinstance(user_id, int):
            raise GitHubError(f"GET {url}: GitHub's answer has no login and id")
        return BotIdentity(found, user_id)

    def _pull(self, full_name: str, number: int) -> PullRequest:
        return self._repo(full_name).get_pull(number)

    def _get_text(self, url: str, accept: str) -> str:
        """GET ``url`` as text in media type ``accept`` (auth and base URL shared)."""
        status, headers, body = self._gh.requester.requestJson(
            "GET", url, headers={"Accept": accept}
        )
        if status >= 400:
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = {"message": body[:300]}
            raise Requester.createException(status, headers, data)
        return body

    # -- pull requests --

    def pull(self, repo: str, number: int) -> PullInfo:
        """The pull request's metadata."""

        def fetch() -> PullInfo:
            pr = self._pull(repo, number)
            return PullInfo(
                number=pr.number,
                title=pr.title,
                head_sha=pr.head.sha,
                base_sha=pr.base.sha,
                draft=bool(pr.draft),
                state=pr.state,
                author=pr.user.login,
                author_type=pr.user.type,
                default_branch=pr.base.repo.default_branch,
                merged=bool(pr.merged),
                closed_at=pr.closed_at,
                body=pr.body or "",
                labels=tuple(label.name for label in pr.labels),
                head_ref=pr.head.ref or "",
            )

        return self._call(f"GET /repos/{repo}/pulls/{number}", fetch)

    def pull_diff(self, repo: str, number: int) -> str:
        """The pull request's diff (``application/vnd.github.diff``)."""
        url = f"/repos/{_check_repo(repo)}/pulls/{number}"
        return self._call(f"GET {url} (diff)", lambda: self._get_text(url, DIFF_MEDIA_TYPE))

    def compare_diff(self, repo: str, base_sha: str, head_sha: str) -> str:
        """The diff between two commits (for incremental reviews)."""
        url = f"/repos/{_check_repo(repo)}/compare/{base_sha}...{head_sha}"
        return self._call(f"GET {url} (diff)", lambda: self._get_text(url, DIFF_MEDIA_TYPE))

    # -- repository configuration --

    def repo_config(self, repo: str, default_branch: str | None = None) -> RepoConfig:
        """``.github/reviewbot.toml`` from the default branch; defaults when absent.

        ``default_branch`` None reads at GitHub's default ref, the default branch.
        Raises :class:`RepoConfigError` for an invalid file.
        """

        def fetch() -> str | None:
            r = self._repo(repo)
            try:
                if default_branch is None:
                    content = r.get_contents(REPO_CONFIG_PATH)
                else:
                    content = r.get_contents(REPO_CONFIG_PATH, ref=default_branch)
            except UnknownObjectException:
                return None
            if isinstance(content, list) or content.type != "file":
                raise RepoConfigError("is not a file")
            if content.encoding != "base64":
                raise RepoConfigError("is too large to read")
            try:
                return content.decoded_content.decode("utf-8")
            except UnicodeDecodeError:
                raise RepoConfigError("is not UTF-8 text") from None

        text = self._call(f"GET /repos/{repo}/contents/{REPO_CONFIG_PATH}", fetch)
        if text is None:
            log.info("%s has no %s; using defaults", repo, REPO_CONFIG_PATH)
        return parse_repo_config(text)

    # -- what was posted before --

    def markers(self, repo: str, number: int, conversation: bool = False) -> Markers:
        """Every marker in the reviews and review comments reviewbot itself wrote on the PR.

        ``conversation``: its conversation tab's comments too (command replies).
        Markers in anyone else's text are ignored.
        """
        ours = self.identity.is_author

        def fetch() -> Markers:
            pr = self._pull(repo, number)
            listings = [pr.get_reviews(), pr.get_review_comments()]
            if conversation:
                listings.append(pr.get_issue_comments())
            found = Markers()
            for listing in listings:
                for item in listing:
                    data = _raw(item)
                    if ours(data.get("user")):
                        found |= parse_markers(data.get("body"))
            return found

        return self._call(f"GET /repos/{repo}/pulls/{number}/reviews+comments", fetch)

    def posted_fingerprints(self, repo: str, number: int) -> set[str]:
        """Fingerprints of the findings already posted on the pull request."""
        return set(self.markers(repo, number).findings)

    def find_review(
        self, repo: str, number: int, kind: str, head_sha: str, fingerprint: str | None = None
    ) -> int | None:
        """The id of reviewbot's review of ``kind`` at ``head_sha`` (and ``fingerprint``)."""
        ours = self.identity.is_author

        def fetch() -> int | None:
            for review in self._pull(repo, number).get_reviews():
                data = _raw(review)
                if not ours(data.get("user")):
                    continue
                for m in parse_markers(data.get("body")).reviews:
                    if (m.kind, m.head_sha) == (kind, head_sha) and fingerprint in (
                        None,
                        m.fingerprint,
                    ):
                        return int(data["id"])
            return None

        return self._call(f"GET /repos/{repo}/pulls/{number}/reviews", fetch)

    def has_review(self, repo: str, number: int, kind: str, head_sha: str) -> bool:
        """Whether a review of ``kind`` at ``head_sha`` was already posted."""
        return self.find_review(repo, number, kind, head_sha) is not None

    # -- comments, threads, reactions (slash commands) --

    def review_comments(self, repo: str, number: int) -> list[CommentInfo]:
        """Every inline review comment of the pull request, oldest first."""
        return self._comments(repo, number, "pulls", lambda pr: pr.get_review_comments())

    def issue_comments(self, repo: str, number: int) -> list[CommentInfo]:
        """Every comment of the pull request's conversation tab, oldest first."""
        return self._comments(repo, number, "issues", lambda pr: pr.get_issue_comments())

    def _comments(
        self, repo: str, number: int, where: str, listing: Callable[[PullRequest], Any]
    ) -> list[CommentInfo]:
        url = f"/repos/{_check_repo(repo)}/{where}/{number}/comments"
        identity = self.identity
        return self._call(
            f"GET {url}",
            lambda: sorted(
                (_comment_info(_raw(c), identity) for c in listing(self._pull(repo, number))),
                key=lambda c: c.id,
            ),
        )

    def review_comment(self, repo: str, comment_id: int) -> CommentInfo:
        """One inline review comment."""
        url = f"/repos/{_check_repo(repo)}/pulls/comments/{int(comment_id)}"
        identity = self.identity
        return self._call(f"GET {url}", lambda: _comment_info(self._get_json(url), identity))

    def review_thread(self, repo: str, number: int, comment_id: int) -> list[CommentInfo]:
        """The review thread holding ``comment_id``: its root comment first, then replies."""
        comments = self.review_comments(repo, number)
        by_id = {c.id: c for c in comments}
        if comment_id not in by_id:
            raise GitHubError(f"review comment {comment_id} is not on {repo}#{number}", 404)
        root = by_id[comment_id].in_reply_to or comment_id
        return [c for c in comments if c.id == root or c.in_reply_to == root]

    def role(self, repo: str, login: str) -> str:
        """``login``'s role on ``repo``: admin, maintain, write, triage, read or none."""
        url = f"/repos/{_check_repo(repo)}/collaborators/{quote(login, safe='')}/permission"

        def fetch() -> str:
            try:
                _, data = self._gh.requester.requestJsonAndCheck("GET", url)
            except UnknownObjectException:
                return "none"  # not a user GitHub knows on this repository
            return str(data.get("role_name") or data.get("permission") or "none")

        return self._call(f"GET {url}", fetch)

    def file_text(self, repo: str, path: str, ref: str) -> str:
        """The text of ``path`` at ``ref`` (a commit sha or branch)."""

        def fetch() -> str:
            content = self._repo(repo).get_contents(path, ref=ref)
            if isinstance(content, list) or content.type != "file":
                raise GitHubError(f"{path} at {ref[:7]} is not a file")
            if content.encoding != "base64":
                raise GitHubError(f"{path} at {ref[:7]} is too large to read")
            try:
                return content.decoded_content.decode("utf-8")
            except UnicodeDecodeError:
                raise GitHubError(f"{path} at {ref[:7]} is not UTF-8 text") from None

        return self._call(f"GET /repos/{repo}/contents/{path}?ref={ref[:7]}", fetch)

    def unresolved_threads(self, repo: str, number: int) -> set[int]:
        """Root comment ids of the PR's review threads that are neither resolved nor outdated."""
        threads = self.review_threads(repo, number)
        return {t.root_id for t in threads if not t.resolved and not t.outdated}

    def review_threads(self, repo: str, number: int) -> list[ThreadInfo]:
        """Every review thread of the pull request (resolution exists only in GraphQL)."""
        owner, name = _check_repo(repo).split("/")
        found: list[ThreadInfo] = []
        cursor: str | None = None
        while True:
            variables = {"owner": owner, "name": name, "number": number, "cursor": cursor}
            _, data = self._call(
                f"POST graphql reviewThreads {repo}#{number}",
                lambda v=variables: self._gh.requester.graphql_query(_THREADS_QUERY, v),
            )
            pull = ((data.get("data") or {}).get("repository") or {}).get("pullRequest")
            if pull is None:
                raise GitHubError(f"{repo}#{number} not found (GraphQL)", 404)
            threads = pull["reviewThreads"]
            for node in threads["nodes"]:
                first = node["comments"]["nodes"]
                if not first:
                    continue
                by = node.get("resolvedBy") or {}
                found.append(
                    ThreadInfo(
                        root_id=int(first[0]["databaseId"]),
                        resolved=bool(node["isResolved"]),
                        outdated=bool(node["isOutdated"]),
                        resolved_by=str(by["login"]) if by.get("login") else None,
                        node_id=str(node.get("id") or ""),
                    )
                )
            if not threads["pageInfo"]["hasNextPage"]:
                return found
            cursor = threads["pageInfo"]["endCursor"]

    def resolve_thread(self, repo: str, thread_id: str) -> None:
        """Resolve a review thread (GraphQL ``resolveReviewThread``; idempotent)."""
        _check_repo(repo)

        def resolve() -> None:
            _, data = self._gh.requester.graphql_query(_RESOLVE_MUTATION, {"thread": thread_id})
            if data.get("errors"):
                message = "; ".join(str(e.get("message")) for e in data["errors"])
                raise GitHubError(f"could not resolve thread {thread_id}: {message}", 422)

        self._call(f"POST graphql resolveReviewThread {repo}", resolve)

    def update_pull_body(self, repo: str, number: int, body: str) -> None:
        """Replace the pull request's description (PATCH /pulls/{number})."""
        url = f"/repos/{_check_repo(repo)}/pulls/{int(number)}"

        def patch() -> None:
            self._gh.requester.requestJsonAndCheck("PATCH", url, input={"body": body})

        self._call(f"PATCH {url}", patch)

    def reactions(self, repo: str, comment_type: str, comment_id: int) -> list[ReactionInfo]:
        """Every reaction on a comment ("review" or "issue"), oldest first."""
        url = f"{_comment_url(repo, comment_type, comment_id)}/reactions"
        per_page = self.settings.per_page

        def fetch() -> list[ReactionInfo]:
            out: list[ReactionInfo] = []
            page = 1
            while True:
                _, data = self._gh.requester.requestJsonAndCheck(
                    "GET", url, parameters={"per_page": per_page, "page": page}
                )
                for item in data if isinstance(data, list) else []:
                    user = item.get("user") or {}
                    out.append(
                        ReactionInfo(
                            id=int(item["id"]),
                            content=str(item.get("content") or ""),
                            login=str(user.get("login") or ""),
                            user_type=str(user.get("type") or "User"),
                        )
                    )
                if not isinstance(data, list) or len(data) < per_page:
                    return out
                page += 1

        return self._call(f"GET {url}", fetch)

    def add_reaction(self, repo: str, comment_type: str, comment_id: int, content: str) -> int:
        """React to a comment (idempotent on GitHub's side); returns the reaction's id."""
        url = f"{_comment_url(repo, comment_type, comment_id)}/reactions"

        def post() -> int:
            _, data = self._gh.requester.requestJsonAndCheck(
                "POST", url, input={"content": content}
            )
            return int(data["id"])

        return self._call(f"POST {url} ({content})", post)

    def remove_reaction(
        self, repo: str, comment_type: str, comment_id: int, reaction_id: int
    ) -> None:
        """Delete one of the app's reactions (already gone is fine)."""
        url = f"{_comment_url(repo, comment_type, comment_id)}/reactions/{reaction_id}"

        def delete() -> None:
            with contextlib.suppress(UnknownObjectException):
                self._gh.requester.requestJsonAndCheck("DELETE", url)

        self._call(f"DELETE {url}", delete)

    def swap_reaction(
        self, repo: str, comment_type: str, comment_id: int, old: str, new: str | None
    ) -> None:
        """Replace the app's ``old`` reaction on a comment with ``new`` (None: just remove).

        Re-adding ``old`` returns the app's existing reaction, whose id is then deleted.
        """
        old_id = self.add_reaction(repo, comment_type, comment_id, old)
        self.remove_reaction(repo, comment_type, comment_id, old_id)
        if new is not None:
            self.add_reaction(repo, comment_type, comment_id, new)

    def post_comment(self, repo: str, number: int, body: str, marker: str) -> int:
        """A comment of reviewbot's own in the conversation (not an answer); returns its id.

        ``body`` carries ``marker``: before a retry after an uncertain failure,
        reviewbot's own comment carrying it is looked up (never posted twice).
        """
        text = clip_text(body, COMMENT_BODY_MAX_CHARS)
        if marker not in text:
            raise ValueError("the comment must carry its marker")
        url = f"/repos/{_check_repo(repo)}/issues/{int(number)}/comments"

        def posted() -> int | None:
            found = (
                c for c in self.issue_comments(repo, number) if c.by_reviewbot and marker in c.body
            )
            return next((c.id for c in found), None)

        def post() -> int:
            _, data = self._gh.requester.requestJsonAndCheck("POST", url, input={"body": text})
            return int(data["id"])

        return self._call(f"POST {url}", post, posted)

    def reply(self, repo: str, number: int, comment_type: str, comment_id: int, body: str) -> int:
        """Answer a comment: in its review thread, or in the conversation; returns the id.

        ``body`` must carry the answer's reply marker: before a retry after an
        uncertain failure, reviewbot's own reply carrying it is looked up (never posted
        twice; the same marker in anyone else's comment does not count).
        """
        text = clip_text(body, COMMENT_BODY_MAX_CHARS)
        marker = reply_marker(comment_id)
        if marker not in text:
            raise ValueError("a reply must carry the reply marker of the comment it answers")
        if comment_type == "review":
            # GitHub takes replies to a thread's top-level comment only.
            root = self.review_comment(repo, comment_id).in_reply_to or comment_id
            url = f"/repos/{_check_repo(repo)}/pulls/{number}/comments/{root}/replies"
            listing = self.review_comments
        else:
            url = f"/repos/{_check_repo(repo)}/issues/{number}/comments"
            listing = self.issue_comments

        def posted() -> int | None:
            found = (c for c in listing(repo, number) if c.by_reviewbot and marker in c.body)
            return next((c.id for c in found), None)

        def post() -> int:
            _, data = self._gh.requester.requestJsonAndCheck("POST", url, input={"body": text})
            return int(data["id"])

        reply_id = self._call(f"POST {url}", post, posted)
        log.info("replied to comment %d on %s#%d: comment %d", comment_id, repo, number, reply_id)
        return reply_id

    # -- posting --

    def post_review(self, repo: str, number: int, payload: ReviewPayload) -> int:
        """Post ``payload`` as one review; returns its id.

        A 422 (a comment GitHub cannot place) moves the comments it cannot place
        — found against the PR's file patches, else all of them — into the body
        and retries, so the review is still posted. Before any retry after an
        uncertain failure (5xx, network), an already-posted review with the same
        marker is looked up and returned instead: the review is never posted twice.
        """
        url = f"/repos/{_check_repo(repo)}/pulls/{number}/reviews"
        current = payload
        checked_patches = False

        def posted() -> int | None:
            return self.find_review(
                repo, number, payload.kind, payload.head_sha, payload.fingerprint
            )

        while True:
            body = current.to_json()
            try:
                review_id = self._call(
                    f"POST {url}", lambda body=body: self._post_json(url, body), posted
                )
            except GitHubError as e:
                if e.status != 422 or not current.inline:
                    raise
                bad = [] if checked_patches else self._unplaceable(repo, number, current)
                checked_patches = True
                moving = bad or list(range(len(current.inline)))
                log.warning(
                    "review on %s#%d rejected (%s); moving %d of %d inline comments into the body",
                    repo,
                    number,
                    e,
                    len(moving),
                    len(current.inline),
                )
                current = move_comments_to_body(current, moving)
                continue
            log.info(
                "posted review %d on %s#%d: %d inline comment(s), %d finding(s) in the body",
                review_id,
                repo,
                number,
                len(current.inline),
                len(current.in_body),
            )
            return review_id

    def _post_json(self, url: str, body: dict[str, Any]) -> int:
        _, data = self._gh.requester.requestJsonAndCheck("POST", url, input=body)
        return int(data["id"])

    def _unplaceable(self, repo: str, number: int, payload: ReviewPayload) -> list[int]:
        """Inline comments of ``payload`` outside the PR's diff ([] when unknown)."""
        try:
            patches = self._call(
                f"GET /repos/{repo}/pulls/{number}/files",
                lambda: {f.filename: f.patch for f in self._pull(repo, number).get_files()},
            )
        except GitHubError as e:
            log.warning("cannot check comment anchors on %s#%d: %s", repo, number, e)
            return []
        return unplaceable_comments(payload.inline, patches)

    # -- check runs --

    def find_check_run(self, repo: str, head_sha: str, external_id: str) -> int | None:
        """The newest "reviewbot" check run on ``head_sha`` with ``external_id`` that is
        not completed (an earlier attempt at the same job left it in progress), or None.

        GitHub lists a commit's check runs by name (``filter=all``: not only the
        latest); the external id is matched here, as GitHub offers no filter for it.
        """
        url = f"/repos/{_check_repo(repo)}/commits/{quote(head_sha, safe='')}/check-runs"
        per_page = self.settings.per_page
        params: dict[str, Any] = {
            "check_name": self.settings.check_run_name,
            "filter": "all",
            "per_page": per_page,
        }

        def fetch() -> int | None:
            open_ids: list[int] = []
            for page in range(1, _CHECK_RUN_PAGES + 1):
                _, data = self._gh.requester.requestJsonAndCheck(
                    "GET", url, parameters={**params, "page": page}
                )
                runs = data.get("check_runs") or []
                open_ids += [
                    int(run["id"])
                    for run in runs
                    if run.get("external_id") == external_id and run.get("status") != "completed"
                ]
                if len(runs) < per_page or page * per_page >= int(data.get("total_count") or 0):
                    break
            return max(open_ids, default=None)

        return self._call(f"GET {url}", fetch)

    def start_check_run(self, repo: str, head_sha: str, external_id: str) -> int:
        """Create the "reviewbot" check run on ``head_sha``, in progress, carrying
        ``external_id`` (the job's key); returns its id.

        A retried POST first looks for the run by ``external_id``: GitHub may have
        created it although the answer was lost.
        """

        def create() -> int:
            run = self._repo(repo).create_check_run(
                name=self.settings.check_run_name,
                head_sha=head_sha,
                external_id=external_id,
                status="in_progress",
                started_at=datetime.now(UTC),
            )
            return run.id

        return self._call(
            f"POST /repos/{repo}/check-runs",
            create,
            on_retry=lambda: self.find_check_run(repo, head_sha, external_id),
        )

    def complete_check_run(
        self, repo: str, check_id: int, conclusion: str, title: str, summary: str
    ) -> None:
        """Complete check run ``check_id`` with ``conclusion`` and its output text."""
        if conclusion not in CHECK_RUN_CONCLUSIONS:
            raise ValueError(f"unknown check run conclusion {conclusion!r}")
        url = f"/repos/{_check_repo(repo)}/check-runs/{check_id}"
        body = {
            "status": "completed",
            "conclusion": conclusion,
            "completed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "output": {
                "title": clip_text(title, CHECK_RUN_TITLE_MAX_CHARS),
                "summary": clip_text(summary, CHECK_RUN_SUMMARY_MAX_CHARS),
            },
        }
        self._call(
            f"PATCH {url}",
            lambda: self._gh.requester.requestJsonAndCheck("PATCH", url, input=body),
        )
