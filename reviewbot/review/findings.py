"""Findings and the review they become (pure data)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from reviewbot.review.suggestions import Suggestion
from reviewbot.review.units import ReviewUnit, Side, Skipped


@dataclass(frozen=True)
class Finding:
    """A critique that survived noise control, with its optional revision."""

    unit: ReviewUnit
    critique: str
    revision: str | None = None
    suggestion: Suggestion | None = None
    also: tuple[ReviewUnit, ...] = ()
    """Units whose near-duplicate findings were merged into this one."""


@dataclass(frozen=True)
class Comment:
    """An inline review comment anchored on ``start_line``..``line`` of ``side``.

    ``start_line`` is None for a single-line comment (GitHub's convention).
    """

    path: str
    line: int
    side: Side
    start_line: int | None
    body: str
    suggestion: str | None
    fingerprint: str

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "start_line": self.start_line,
            "line": self.line,
            "side": self.side,
            "body": self.body,
            "suggestion": self.suggestion,
        }


@dataclass(frozen=True)
class Dropped:
    """A critique removed by noise control, kept for logs and statistics."""

    path: str
    start_line: int
    reason: str


@dataclass(frozen=True)
class Review:
    units: tuple[ReviewUnit, ...]
    comments: tuple[Comment, ...]
    summary: str | None
    skipped: tuple[Skipped, ...]
    dropped: tuple[Dropped, ...] = field(default=())

    def to_json(self) -> dict:
        return {
            "units": [u.to_json() for u in self.units],
            "comments": [c.to_json() for c in self.comments],
            "summary": self.summary,
            "skipped": [s.to_json() for s in self.skipped],
        }


_WORDS = re.compile(r"[a-z0-9_]+")


def fingerprint(path: str, critique: str, suggestion: str | None) -> str:
    """A stable id of a finding: same file, same words, same suggestion."""
    words = " ".join(_WORDS.findall(critique.lower()))
    h = hashlib.sha256(f"{path}\0{words}\0{suggestion or ''}".encode())
    return h.hexdigest()[:16]
