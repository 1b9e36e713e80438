"""What the GitHub edge hands the runners: pull requests, comments, reviewbot's own
account (pure data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reviewbot.settings.defaults import BOT_LOGIN_SUFFIX


def app_bot_login(slug: str) -> str:
    """The login of a GitHub App's bot account: ``{slug}[bot]``."""
    return f"{slug}{BOT_LOGIN_SUFFIX}"


@dataclass(frozen=True)
class BotIdentity:
    """reviewbot's own GitHub account: the App's bot user, or the account an override names.

    Only what this account authored counts as reviewbot's (its markers, its answers,
    its findings). ``id`` is the account's user id (None: not known, match by login).
    """

    login: str
    id: int | None = None

    def is_account(self, login: str | None, user_id: int | None) -> bool:
        """Whether the account ``login``/``user_id`` is this one.

        By id when both ids are known (it survives a renamed App), else by login,
        case-insensitively (GitHub logins are). An empty login is never a match.
        """
        if self.id is not None and user_id is not None:
            return user_id == self.id
        return bool(login) and str(login).lower() == self.login.lower()

    def is_author(self, user: Mapping[str, Any] | None) -> bool:
        """Whether GitHub's user object ``user`` (a comment's or review's ``user``) is this one."""
        if not isinstance(user, Mapping):
            return False
        user_id = user.get("id")
        valid_id = isinstance(user_id, int) and not isinstance(user_id, bool)
        return self.is_account(user.get("login"), user_id if valid_id else None)


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
    merged: bool = False
    closed_at: datetime | None = None
    body: str = ""
    """The pull request's description (its author's text, and /describe's section)."""
    labels: tuple[str, ...] = ()
    head_ref: str = ""
    """The head branch's name."""


@dataclass(frozen=True)
class CommentInfo:
    """A pull-request comment: conversation (issue) or inline review comment.

    ``path``, ``line``, ``start_line``, ``side``, ``in_reply_to``, ``commit_id``
    and ``diff_hunk`` belong to review comments; ``line`` is None when the
    comment's lines are no longer in the diff (outdated). ``by_reviewbot``: written
    by reviewbot's own account (:class:`BotIdentity`), as the GitHub edge that read
    the comment found; any other author, bots included, is someone else.
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
    author_id: int | None = None
    by_reviewbot: bool = False


@dataclass(frozen=True)
class ThreadInfo:
    """A review thread: its root comment, whether (and by whom) it was resolved, and
    whether GitHub shows it as outdated (its lines changed)."""

    root_id: int
    resolved: bool
    outdated: bool
    resolved_by: str | None = None
    node_id: str = ""
    """The thread's GraphQL id (what ``resolveReviewThread`` takes)."""


@dataclass(frozen=True)
class ReactionInfo:
    """A reaction on a comment: its content (``+1``, ``-1``…) and who reacted."""

    id: int
    content: str
    login: str
    user_type: str = "User"
