"""Findings and the review they become (pure data), and the review's statistics."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from reviewbot.review.suggestions import Suggestion, SyntaxCheck, normalise_code
from reviewbot.review.units import ReviewUnit, Side, Skipped

#: Why a finding was merged into another one rather than posted (a counted reason).
NEAR_DUPLICATE = "near-duplicate"


@dataclass(frozen=True)
class Finding:
    """A critique that survived noise control, with its optional revision."""

    unit: ReviewUnit
    critique: str
    revision: str | None = None
    suggestion: Suggestion | None = None
    also: tuple[ReviewUnit, ...] = ()
    """Units whose near-duplicate findings were merged into this one."""
    confidence: float | None = None
    """How sure the model is of the critique (0..1, :mod:`reviewbot.review.confidence`);
    None when it was not scored."""
    syntax: SyntaxCheck | None = None
    """The parse check of the revision's suggestion (it is committable only if it parses)."""
    revision_dropped: str | None = None
    """Why the model's revision is not shown (a counted reason), or None."""


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
    confidence: float | None = None
    """The finding's confidence (0..1); None when it was not scored."""
    critique: str = field(default="", compare=False)
    """The model's critique as it said it (the body is built from it)."""
    unit: ReviewUnit | None = field(default=None, compare=False, repr=False)
    """The unit the model reviewed (what is recorded of a posted finding)."""

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "start_line": self.start_line,
            "line": self.line,
            "side": self.side,
            "body": self.body,
            "suggestion": self.suggestion,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class Dropped:
    """A critique (noise, below confidence, a near-duplicate) or the revision of a finding
    (not code, unchanged, does not parse...) not posted, kept for logs and statistics."""

    path: str
    start_line: int
    reason: str
    what: Literal["critique", "revision"] = "critique"


@dataclass(frozen=True)
class Statistics:
    """What a review did, in counts (the JSON output's ``statistics``, the counts line)."""

    units: int = 0
    findings: int = 0
    """Critiques kept by noise control and the confidence threshold."""
    comments: int = 0
    committable: int = 0
    """Comments carrying a committable ```suggestion."""
    unparsable: int = 0
    """Suggestions that introduce a syntax error (shown as plain code, or dropped)."""
    checked: tuple[tuple[str, int], ...] = ()
    """Suggestions parse-checked per way (``file``, ``hunk``, ``unchecked``)."""
    dropped: tuple[tuple[str, int], ...] = ()
    """Critiques and revisions not posted, per reason, in the order first met."""
    critiques_dropped: int = 0
    """Of those, critiques (the rest are revisions)."""

    def sentences(self) -> list[str]:
        """The suggestions' parse checks and what was not posted, as short sentences
        (the CLI's Markdown and the GitHub review body say them)."""
        out = []
        checked = dict(self.checked)
        if self.committable or checked:
            counts = [f"{self.committable} committable"]
            if self.unparsable:
                counts.append(f"{self.unparsable} {_DOES_NOT_PARSE[self.unparsable == 1]}")
            ways = [
                f"{checked[way]} {words}" for way, words in _CHECKED_WITH.items() if way in checked
            ]
            where = f" ({', '.join(ways)})" if ways else ""
            out.append(f"Suggestions: {', '.join(counts)}{where}.")
        if self.dropped:
            out.append("Not posted: " + ", ".join(f"{r} ({n})" for r, n in self.dropped) + ".")
        return out

    def to_json(self) -> dict:
        checked = dict(self.checked)
        return {
            "units": self.units,
            "findings": self.findings,
            "comments": self.comments,
            "suggestions": {
                "committable": self.committable,
                "not_parsing": self.unparsable,
                "checked_against_file": checked.get("file", 0),
                "checked_against_hunk_only": checked.get("hunk", 0),
                "not_checked": checked.get("unchecked", 0),
            },
            "dropped": dict(self.dropped),
        }


_DOES_NOT_PARSE = {True: "does not parse", False: "do not parse"}
_CHECKED_WITH = {
    "file": "parsed with the file at the head",
    "hunk": "parsed with the changed lines only",
    "unchecked": "not parsed: no grammar for the language",
}


@dataclass(frozen=True)
class Review:
    units: tuple[ReviewUnit, ...]
    comments: tuple[Comment, ...]
    summary: str | None
    skipped: tuple[Skipped, ...]
    dropped: tuple[Dropped, ...] = field(default=())
    checks: tuple[SyntaxCheck, ...] = field(default=())
    """The parse checks of the suggestions the review's findings made."""

    @property
    def statistics(self) -> Statistics:
        """The review's counts, all derived from its fields."""
        reasons = Counter(d.reason for d in self.dropped)
        return Statistics(
            units=len(self.units),
            findings=len(self.comments) + reasons[NEAR_DUPLICATE],
            comments=len(self.comments),
            committable=sum(c.suggestion is not None for c in self.comments),
            unparsable=sum(not c.parses for c in self.checks),
            checked=tuple(Counter(c.against for c in self.checks).items()),
            dropped=tuple(reasons.items()),
            critiques_dropped=sum(d.what == "critique" for d in self.dropped),
        )

    def to_json(self) -> dict:
        return {
            "units": [u.to_json() for u in self.units],
            "comments": [c.to_json() for c in self.comments],
            "summary": self.summary,
            "skipped": [s.to_json() for s in self.skipped],
            "statistics": self.statistics.to_json(),
        }


_WORDS = re.compile(r"[a-z0-9_]+")


def fingerprint(path: str, critique: str, suggestion: str | None, code: str = "") -> str:
    """A stable id of a finding: same file, same words, same suggestion, same code.

    ``code`` is the code the finding is anchored on (:func:`anchored_code`), whitespace
    normalised: the same finding on the same code is recognised wherever its lines
    moved (a rebase), and the same words on other code are another finding.
    """
    words = " ".join(_WORDS.findall(critique.lower()))
    code_hash = hashlib.sha256(normalise_code(code).encode()).hexdigest()
    h = hashlib.sha256(f"{path}\0{words}\0{suggestion or ''}\0{code_hash}".encode())
    return h.hexdigest()[:16]


def anchored_code(unit: ReviewUnit, start: int, end: int) -> str:
    """The unit's lines ``start``..``end`` (same side and numbering as the unit)."""
    return "\n".join(unit.lines[start - unit.start_line : end - unit.start_line + 1])
