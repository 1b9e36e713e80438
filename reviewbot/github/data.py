"""What the GitHub edge hands the runners: pull requests and comments (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from reviewbot.settings.defaults import BOT_LOGIN_SUFFIX


@dataclass(frozen=True)
class PullInfo:
    number: int
    title: str
    head_sha: str
    base_sha: str
    draft: bool
    state: str
    author: str
    author_type: str
    default_branch: str


@dataclass(frozen=True)
class CommentInfo:
    """A pull-request comment: conversation (issue) or inline review comment.

    ``path``, ``line``, ``start_line``, ``side``, ``in_reply_to``, ``commit_id``
    and ``diff_hunk`` belong to review comments; ``line`` is None when the
    comment's lines are no longer in the diff (outdated).
    """

    id: int
    author: str
    author_type: str
    body: str
    path: str | None = None
    line: int | None = None
    start_line: int | None = None
    side: str | None = None
    in_reply_to: int | None = None
    commit_id: str | None = None
    diff_hunk: str = ""

    @property
    def by_bot(self) -> bool:
        return self.author_type == "Bot" or self.author.endswith(BOT_LOGIN_SUFFIX)
