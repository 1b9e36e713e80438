"""Diff hunks (as GitHub's ``diff_hunk`` and review datasets carry them) → new-side code.

Serving feeds the model the NEW side of a hunk (context + added lines, no diff
markers; see :class:`reviewbot.units.ReviewUnit`), so every data source turns
its hunk into that text here, with the new-side line numbers a comment anchors on.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from reviewbot.units import ReviewUnit

_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@[^\n]*")
#: Some datasets double the hunk marker ("@@ @@ -909,12 +910,22 @@ ...").
_DOUBLED = re.compile(r"^@@ @@ (?=-\d)")
_SUGGESTION = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*suggestion[^\n]*\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$",
    re.S | re.M,
)

#: A last hunk line that only says the hunk was cut short.
_TRUNCATED = ("…", "...")

Side = Literal["RIGHT", "LEFT"]


class HunkError(ValueError):
    """Text that is not a usable diff hunk (the message says why)."""


@dataclass(frozen=True)
class Hunk:
    """A parsed hunk: its header and each line's kind and line numbers."""

    header: str
    old_start: int
    new_start: int
    kinds: tuple[str, ...]
    """Per line: " " (context), "+" (added) or "-" (removed)."""
    texts: tuple[str, ...]
    """Per line: its text without the diff marker."""
    new_numbers: tuple[int | None, ...]
    old_numbers: tuple[int | None, ...]

    @property
    def new_lines(self) -> list[str]:
        """The new-side text (context + added lines), one item per line."""
        return [t for t, k in zip(self.texts, self.kinds, strict=True) if k != "-"]

    @property
    def new_range(self) -> tuple[int, int] | None:
        """First and last new-side line numbers, None for a pure deletion."""
        numbers = [n for n in self.new_numbers if n is not None]
        return (numbers[0], numbers[-1]) if numbers else None

    @property
    def added(self) -> tuple[int, ...]:
        return tuple(n for n, k in zip(self.new_numbers, self.kinds, strict=True) if k == "+" and n)

    def original(self) -> str:
        """ORIGINAL as serving renders it: the new-side lines joined by newlines."""
        return "\n".join(self.new_lines)

    def unit(self, path: str) -> ReviewUnit:
        """The review unit the planner would build from this hunk (RIGHT side)."""
        span = self.new_range
        if span is None:
            raise HunkError("the hunk has no new-side lines (a pure deletion)")
        return ReviewUnit(
            path=path,
            start_line=span[0],
            end_line=span[1],
            hunk_header=self.header,
            original=self.original(),
            added_lines=self.added,
        )

    def side_of(self, line: int) -> Side | None:
        """Which side ``line`` (a comment's line number) is on, or None when outside.

        GitHub's ``diff_hunk`` ends at the commented line: a hunk ending on a
        removed line whose old number is ``line`` was commented on the LEFT side.
        """
        if self.kinds and self.kinds[-1] == "-" and self.old_numbers[-1] == line:
            return "LEFT"
        if line in self.new_numbers:
            return "RIGHT"
        if line in self.old_numbers:
            return "LEFT"
        return None


def parse_hunk(text: str) -> Hunk:
    """Parse one hunk (header + lines); raises :class:`HunkError` when unusable."""
    text = _DOUBLED.sub("@@ ", text.replace("\r\n", "\n"), count=1)
    lines = text.split("\n")
    m = _HEADER.match(lines[0])
    if not m:
        raise HunkError("the hunk does not start with an @@ -a,b +c,d @@ header")
    old_no, new_no = int(m.group(1)), int(m.group(3))
    kinds: list[str] = []
    texts: list[str] = []
    new_numbers: list[int | None] = []
    old_numbers: list[int | None] = []
    body = lines[1:]
    while body and body[-1] == "":
        body.pop()
    if body and body[-1] in _TRUNCATED:
        body.pop()  # a dataset cut the hunk short here
    for i, line in enumerate(body, 2):
        if line.startswith("\\"):
            continue  # "\ No newline at end of file"
        kind = line[:1] or " "  # an empty line is a context line that lost its space
        if kind not in " +-":
            raise HunkError(f"hunk line {i} has no diff marker: {line[:60]!r}")
        kinds.append(kind)
        texts.append(line[1:])
        new_numbers.append(new_no if kind != "-" else None)
        old_numbers.append(old_no if kind != "+" else None)
        new_no += kind != "-"
        old_no += kind != "+"
    if not kinds:
        raise HunkError("the hunk has no lines (were its newlines lost?)")
    return Hunk(
        header=m.group(0),
        old_start=int(m.group(1)),
        new_start=int(m.group(3)),
        kinds=tuple(kinds),
        texts=tuple(texts),
        new_numbers=tuple(new_numbers),
        old_numbers=tuple(old_numbers),
    )


def strip_markers(code: str) -> str:
    """Code whose lines carry diff markers (CodeReviewer's ``old``/``new``) without them."""
    lines = code.replace("\r\n", "\n").split("\n")
    if not all(line[:1] in ("", " ", "+", "-") for line in lines):
        return code
    return "\n".join(line[1:] for line in lines if not line.startswith("-"))


@dataclass(frozen=True)
class SplitComment:
    """A review comment's prose and its first ```suggestion block (None if none)."""

    text: str
    suggestion: str | None


def split_suggestion(comment: str) -> SplitComment:
    """Separate a ```suggestion block from the prose of a review comment."""
    comment = comment.replace("\r\n", "\n")
    m = _SUGGESTION.search(comment)
    if m is None:
        return SplitComment(comment.strip(), None)
    body = m.group("body")
    if body.endswith("\n"):
        body = body[:-1]
    prose = (comment[: m.start()] + comment[m.end() :]).strip()
    prose = _SUGGESTION.sub("", prose).strip()
    return SplitComment(re.sub(r"\n{3,}", "\n\n", prose), body)


def infer_start(
    lines: list[str], first: int, end: int, replacement: str, margin: float = 0.15
) -> int:
    """The most likely first line a suggestion replaces when only its last line is known.

    ``lines`` are new-side lines numbered from ``first``; candidate ranges end at
    ``end`` and are at most a few lines longer than the replacement. Most review
    comments are on one line: a longer range wins only when it is more similar to
    the replacement than that line by ``margin`` (and the most similar one wins).
    """
    want = len(replacement.split("\n"))
    best, best_score = end, -1.0
    lowest = max(first, end - want - 2)
    for start in range(end, lowest - 1, -1):
        chunk = "\n".join(lines[start - first : end - first + 1])
        score = difflib.SequenceMatcher(None, chunk, replacement, autojunk=False).ratio()
        if start == end:
            best_score = score
        elif score > best_score + margin:
            best, best_score = start, score - margin
    return best


def apply_replacement(hunk: Hunk, start: int, end: int, replacement: str) -> str:
    """The hunk's new-side text with lines ``start``..``end`` replaced (a suggestion)."""
    span = hunk.new_range
    if span is None or not (span[0] <= start <= end <= span[1]):
        raise HunkError(f"lines {start}-{end} are not on the new side of the hunk")
    lines = hunk.new_lines
    lo, hi = start - span[0], end - span[0] + 1
    new = [] if replacement == "" else replacement.split("\n")
    return "\n".join(lines[:lo] + new + lines[hi:])
