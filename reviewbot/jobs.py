"""Jobs: what the webhook enqueues and a worker executes (pure data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

JobKind = Literal["auto", "incremental", "review", "revise", "summary", "ask", "help"]
#: Where a slash command was written: the PR conversation or an inline review thread.
CommentType = Literal["issue", "review"]
JOB_KINDS: tuple[str, ...] = ("auto", "incremental", "review", "revise", "summary", "ask", "help")
#: Kinds started by a person in a PR comment; served before automatic reviews.
INTERACTIVE_KINDS: frozenset[str] = frozenset({"review", "revise", "summary", "ask", "help"})


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
        return self.kind in INTERACTIVE_KINDS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
