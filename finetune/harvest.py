"""Harvest a repository's human review comments into training examples.

``reviewbot finetune harvest OWNER/REPO --since DATE --out FILE.jsonl`` walks the
merged pull requests (newest first) and keeps the inline review comments people
wrote on them, with their ``diff_hunk``: each becomes a critique example, and a
```suggestion in it a revise example (:func:`finetune.sources.from_review_comment`,
the same parser as for review-comment datasets). Comments by bots (user type
``Bot`` or a login ending in ``[bot]``), comments carrying reviewbot's markers,
replies inside a thread and the PR author's own comments are left out.

The GitHub calls go through :class:`reviewbot.github.client.GitHubClient`
(bounded retries, clear errors, tokens never logged); the selection and the
conversion of comments are pure functions of GitHub's JSON.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from finetune.examples import Example, dedupe
from finetune.sources import Skip, SourceError, from_review_comment
from reviewbot.github.client import GitHubClient
from reviewbot.settings.defaults import (
    BOT_LOGIN_SUFFIX,
    HUMAN_LABEL,
    REVIEWBOT_MARKER_PREFIX,
    TRUSTED_ASSOCIATIONS,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class MergedPull:
    number: int
    author: str
    merged_at: datetime
    title: str = ""


@dataclass
class HarvestReport:
    """Counts of one harvest run."""

    repo: str
    pulls: int = 0
    comments: int = 0
    used_comments: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[Example] = field(default_factory=list)
    duplicates: int = 0

    def summary(self) -> str:
        tasks = Counter(ex.task for ex in self.examples)
        lines = [
            f"{self.repo}: {self.pulls} merged pull request(s), {self.comments} review comment(s),"
            f" {self.used_comments} used",
            f"examples: {len(self.examples)}"
            + (f" ({', '.join(f'{n} {t}' for t, n in sorted(tasks.items()))})" if tasks else "")
            + (f", {self.duplicates} duplicate(s) dropped" if self.duplicates else ""),
        ]
        for reason, n in self.skipped.most_common():
            lines.append(f"skipped {n}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- pure part


def is_bot(user: dict[str, Any] | None) -> bool:
    """A GitHub App or other bot account (type ``Bot``, or a ``[bot]`` login)."""
    user = user or {}
    return user.get("type") == "Bot" or str(user.get("login") or "").endswith(BOT_LOGIN_SUFFIX)


def skip_reason(
    comment: dict[str, Any],
    pr_author: str,
    trusted: frozenset[str] | None = TRUSTED_ASSOCIATIONS,
) -> str | None:
    """Why a review comment (GitHub's JSON) is not training data, or None.

    ``trusted``: the ``author_association`` values whose comments are kept (the team:
    owners, members, collaborators), so outsiders cannot plant training data; None
    keeps every author's.
    """
    user = comment.get("user") or {}
    if is_bot(user):
        return "written by a bot"
    association = comment.get("author_association") or "NONE"
    if trusted is not None and association not in trusted:
        return f"not by the team (author_association {association})"
    body = str(comment.get("body") or "")
    if REVIEWBOT_MARKER_PREFIX in body:
        return "posted by reviewbot (marker)"
    if comment.get("in_reply_to_id"):
        return "a reply in a thread"
    if user.get("login") == pr_author:
        return "by the pull request's author"
    if not comment.get("diff_hunk"):
        return "no diff hunk"
    if not body.strip():
        return "empty comment"
    return None


def comment_record(repo: str, pr: int, comment: dict[str, Any]) -> dict[str, Any]:
    """A review-comment record (the crc dataset's fields) from GitHub's comment JSON.

    ``diff_hunk`` belongs to the commit the comment was made on, so the
    comment's ``original_line``/``original_start_line`` anchor it (``line`` is
    None once the comment is outdated).
    """
    user = comment.get("user") or {}
    line = comment.get("original_line") or comment.get("line")
    start = comment.get("original_start_line") or comment.get("start_line")
    return {
        "code": comment.get("diff_hunk"),
        "comment": comment.get("body"),
        "line_number": line,
        "start_line": start,
        "side": comment.get("side") or "RIGHT",
        "file_path": comment.get("path"),
        "repo": repo,
        "pr_number": pr,
        "comment_id": comment.get("id"),
        "author": user.get("login"),
        "url": comment.get("html_url"),
        "comment_created_at": comment.get("created_at"),
    }


def comment_examples(
    repo: str,
    pull: MergedPull,
    comments: Iterable[dict[str, Any]],
    report: HarvestReport,
    trusted: frozenset[str] | None = TRUSTED_ASSOCIATIONS,
) -> list[Example]:
    """Examples from one pull request's review comments; counts go to ``report``."""
    out: list[Example] = []
    for comment in comments:
        report.comments += 1
        reason = skip_reason(comment, pull.author, trusted)
        if reason is not None:
            report.skipped[reason] += 1
            continue
        record = comment_record(repo, pull.number, comment)
        try:
            examples = from_review_comment(record, {"source": "github"})
        except Skip as e:
            report.skipped[str(e)] += 1
            continue
        except SourceError as e:
            report.skipped[f"malformed comment ({e})"] += 1
            continue
        report.used_comments += 1
        out.extend(examples)
    return out


# --------------------------------------------------------------------------- GitHub


class HarvestClient(GitHubClient):
    """The reads a harvest makes: merged pull requests and their review comments."""

    def _pages(self, what: str, fetch_page: Callable[[int], list[T]]) -> Iterator[T]:
        """Items of a paginated list, each page fetched with bounded retries."""
        page = 0
        while True:
            items = self._call(f"{what} (page {page + 1})", lambda p=page: fetch_page(p))
            yield from items
            if len(items) < self.settings.per_page:
                return
            page += 1

    def merged_pulls(
        self, repo: str, since: datetime, until: datetime | None = None
    ) -> Iterator[MergedPull]:
        """Pull requests merged in [since, until], most recently updated first."""
        pulls = self._repo(repo).get_pulls(state="closed", sort="updated", direction="desc")
        for pr in self._pages(f"GET /repos/{repo}/pulls", pulls.get_page):
            if pr.updated_at is not None and pr.updated_at < since:
                return  # sorted by update: every later one was last touched before `since`
            merged = pr.merged_at
            if merged is None or merged < since or (until is not None and merged > until):
                continue
            yield MergedPull(pr.number, pr.user.login if pr.user else "", merged, pr.title or "")

    def review_comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        """The pull request's inline review comments, as GitHub's JSON."""
        comments = self._repo(repo).get_pull(number).get_review_comments()
        what = f"GET /repos/{repo}/pulls/{number}/comments"
        return [c.raw_data for c in self._pages(what, comments.get_page)]


def harvest(
    client: HarvestClient,
    repo: str,
    since: datetime,
    until: datetime | None = None,
    max_pulls: int | None = None,
    progress: bool = False,
    any_author: bool = False,
) -> HarvestReport:
    """Examples from the review comments of ``repo``'s pull requests merged since ``since``.

    Only the team's comments count (author_association OWNER, MEMBER or COLLABORATOR)
    unless ``any_author``.
    """
    trusted = None if any_author else TRUSTED_ASSOCIATIONS
    from tqdm.auto import tqdm

    report = HarvestReport(repo)
    examples: list[Example] = []
    with tqdm(desc="pull requests", unit="PR", disable=not progress) as bar:
        for pull in client.merged_pulls(repo, since, until):
            if max_pulls is not None and report.pulls >= max_pulls:
                break
            report.pulls += 1
            comments = client.review_comments(repo, pull.number)
            examples.extend(comment_examples(repo, pull, comments, report, trusted))
            bar.update(1)
            bar.set_postfix(comments=report.comments, examples=len(examples))
    report.examples = dedupe(examples)
    report.duplicates = len(examples) - len(report.examples)
    log.info("%s", report.summary().replace("\n", "; "))
    return report


def human_records(examples: Iterable[Example]) -> list[dict[str, Any]]:
    """The team's critique comments as labelled records (``label: "human"``), in the shape
    of ``harvest --outcomes`` (:func:`reviewbot.learning.records.export_record`), so that
    one file holds both for ``finetune train --preference``."""
    out = []
    for ex in examples:
        if ex.task != "critique":
            continue
        prov, ctx = ex.provenance, ex.context
        line = prov.get("line_number")
        out.append(
            {
                "label": HUMAN_LABEL,
                "evidence": [{"signal": "human-comment", "by": prov.get("author")}],
                "fingerprint": None,
                "repo": prov.get("repo"),
                "pr": prov.get("pr"),
                "head_sha": None,
                "path": str(ctx.get("path") or prov.get("path") or ""),
                "side": ctx.get("side", "RIGHT"),
                "start_line": None,
                "line": line if isinstance(line, int) else None,
                "unit_start_line": ctx.get("start_line"),
                "changed": list(ctx.get("changed", ())),
                "original": ex.fields["ORIGINAL"],
                "critique": ex.target,
                "suggestion": None,
                "comment_id": prov.get("comment_id"),
                "model": None,
                "adapter": None,
            }
        )
    return out
