"""Jobs: what the webhook enqueues and a worker executes (pure data).

The kinds are the two automatic reviews plus one kind per slash command of the
command table (:data:`reviewbot.jobs.commands.COMMANDS`); command jobs go to the
interactive queue, which workers drain before the automatic reviews.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from reviewbot.jobs.commands import COMMANDS
from reviewbot.settings.defaults import QUEUE_INTERACTIVE, QUEUE_REVIEWS

#: Automatic reviews, started by pull_request events, with the title of their review.
AUTOMATIC_KINDS: dict[str, str] = {
    "auto": "reviewbot review",
    "incremental": "reviewbot review of the new commits",
}
#: Every job kind: the automatic reviews, then the commands.
JOB_KINDS: tuple[str, ...] = (*AUTOMATIC_KINDS, *COMMANDS)
#: The title of the review each review-posting kind posts.
REVIEW_TITLES: dict[str, str] = {
    **AUTOMATIC_KINDS,
    **{c.name: c.review_title for c in COMMANDS.values() if c.posts_review},
}
#: Review kinds a person asked for: they always get an answer, even "no new findings".
REQUESTED_REVIEW_KINDS: frozenset[str] = frozenset(
    c.name for c in COMMANDS.values() if c.posts_review
)
#: Kinds whose review covers the whole diff at its head: "this head was reviewed".
HEAD_REVIEW_KINDS: frozenset[str] = frozenset(AUTOMATIC_KINDS) | {
    c.name for c in COMMANDS.values() if c.full_review
}

JobKind = str
#: Where a slash command was written: the PR conversation or an inline review thread.
CommentType = Literal["issue", "review"]


@dataclass(frozen=True)
class Job:
    """One unit of work for a worker.

    ``before_sha`` is the previous head for an incremental review (synchronize);
    ``comment_id``, ``comment_type`` and ``args`` belong to slash commands. A
    command from the conversation tab has no ``head_sha`` (""): the webhook
    does not carry it and the worker reads the PR's current head.
    """

    kind: JobKind
    repo: str
    installation_id: int
    pr_number: int
    head_sha: str
    before_sha: str | None = None
    comment_id: int | None = None
    args: str = ""
    delivery_id: str | None = None
    sender: str | None = None
    comment_type: CommentType | None = None

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")
        if self.interactive and (self.comment_id is None or self.comment_type is None):
            raise ValueError(f"a {self.kind!r} job needs the command's comment id and type")

    @property
    def key(self) -> str:
        """The semantic dedupe key: (kind, repo, PR, head sha, comment id)."""
        comment = "" if self.comment_id is None else str(self.comment_id)
        return f"{self.kind}:{self.repo}:{self.pr_number}:{self.head_sha}:{comment}"

    @property
    def interactive(self) -> bool:
        """Whether a person started it with a slash command."""
        return self.kind in COMMANDS

    @property
    def queue(self) -> str:
        """The Celery queue: interactive commands are served before automatic reviews."""
        return QUEUE_INTERACTIVE if self.interactive else QUEUE_REVIEWS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
