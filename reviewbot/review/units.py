"""What the diff planner hands to the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["RIGHT", "LEFT"]


@dataclass(frozen=True)
class ReviewUnit:
    """One reviewable piece of a diff: a hunk, or a slice of a long hunk.

    ``original`` is the new-side text of the hunk (context + added lines) as it
    reads in the file at the PR head, without diff markers, lines joined by
    ``"\\n"`` and no trailing newline. ``start_line``..``end_line`` (1-based,
    inclusive) are the new-side line numbers it covers. For a pure-deletion hunk
    reviewed on the LEFT side, they are old-side numbers and ``original`` is the
    removed text.
    """

    path: str
    start_line: int
    end_line: int
    hunk_header: str
    original: str
    side: Side = "RIGHT"
    added_lines: tuple[int, ...] = ()
    """Line numbers (same side as start/end) that the change added."""

    @property
    def lines(self) -> list[str]:
        return self.original.split("\n")

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "original": self.original,
        }


@dataclass(frozen=True)
class Skipped:
    """A file or hunk left out of the review, with the reason; always reported."""

    path: str
    reason: str

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    units: tuple[ReviewUnit, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    files: tuple[str, ...] = field(default=())
    """Paths of all files the diff touches, in diff order."""


class DiffError(ValueError):
    """A diff that cannot be parsed. ``line`` is the 1-based line of the diff text."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        self.reason = message
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"malformed diff: {where}{message}")
