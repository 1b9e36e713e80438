"""The one diff-hunk parser (pure): hunk headers, hunk bodies and their line numbers.

Every part of reviewbot that reads a hunk reads it here: the diff planner (headers,
while it checks a whole diff), the GitHub review payload (which lines of a file's
``patch`` a comment can be anchored on), and finetune/ (GitHub's ``diff_hunk`` and
review datasets, whose hunks are often cut short after the commented line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from reviewbot.review.units import ReviewUnit

#: ``@@ -OLD[,COUNT] +NEW[,COUNT] @@`` at the start of a line; the section heading follows.
HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
#: Some datasets double the hunk marker ("@@ @@ -909,12 +910,22 @@ ...").
_DOUBLED = re.compile(r"^@@ @@ (?=-\d)")
#: A last hunk line that only says the hunk was cut short.
_TRUNCATED = ("…", "...")

Side = Literal["RIGHT", "LEFT"]


class HunkError(ValueError):
    """Text that is not a usable diff hunk (the message says why)."""


@dataclass(frozen=True)
class HunkHeader:
    """A parsed ``@@ -a,b +c,d @@ section`` line (a missing count is 1)."""

    old_start: int
    old_count: int
    new_start: int
    new_count: int
    range: str
    """The ``@@ -a,b +c,d @@`` part, as written."""
    section: str
    """What follows the range (git's function heading), stripped."""


def parse_header(line: str) -> HunkHeader | None:
    """The hunk header at the start of ``line``, or None when it is none."""
    m = HEADER.match(line)
    if m is None:
        return None
    return HunkHeader(
        old_start=int(m.group(1)),
        old_count=1 if m.group(2) is None else int(m.group(2)),
        new_start=int(m.group(3)),
        new_count=1 if m.group(4) is None else int(m.group(4)),
        range=m.group(0),
        section=line[m.end() :].strip(),
    )


def hunk_range(header: str) -> str:
    """``"@@ -10,3 +10,5 @@"`` out of a full hunk header line (the line itself if none)."""
    parsed = parse_header(header)
    return parsed.range if parsed else header


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
        """New-side numbers of the added lines."""
        return tuple(n for n, k in zip(self.new_numbers, self.kinds, strict=True) if k == "+" and n)

    def lines_on(self, side: Side) -> frozenset[int]:
        """The line numbers a review comment can anchor on: RIGHT, the new side's
        context and added lines; LEFT, the old side's context and removed lines."""
        numbers = self.new_numbers if side == "RIGHT" else self.old_numbers
        return frozenset(n for n in numbers if n is not None)

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
    """Parse one hunk (header + lines); raises :class:`HunkError` when unusable.

    A hunk may be shorter than its header says (GitHub's ``diff_hunk`` stops at the
    commented line; datasets cut hunks and may end them with "..."); an empty line
    is a context line whose leading space was lost.
    """
    text = _DOUBLED.sub("@@ ", text.replace("\r\n", "\n"), count=1)
    lines = text.split("\n")
    header = parse_header(lines[0])
    if header is None:
        raise HunkError("the hunk does not start with an @@ -a,b +c,d @@ header")
    old_no, new_no = header.old_start, header.new_start
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
        kind = line[:1] or " "
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
        header=lines[0],
        old_start=header.old_start,
        new_start=header.new_start,
        kinds=tuple(kinds),
        texts=tuple(texts),
        new_numbers=tuple(new_numbers),
        old_numbers=tuple(old_numbers),
    )


def parse_patch(patch: str) -> list[Hunk]:
    """The hunks of one file's patch (a diff without file headers, as GitHub's
    ``GET /pulls/{n}/files`` gives it); text before the first header is ignored."""
    hunks: list[list[str]] = []
    for line in patch.replace("\r\n", "\n").rstrip("\n").split("\n"):
        if HEADER.match(line):
            hunks.append([line])
        elif hunks:
            hunks[-1].append(line)
    return [parse_hunk("\n".join(lines)) for lines in hunks if len(lines) > 1]
