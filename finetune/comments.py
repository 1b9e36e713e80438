"""Review comments as training data: diff markers, ```suggestion blocks, their lines.

Hunks themselves are parsed by reviewbot's one hunk parser
(:mod:`reviewbot.review.hunks`); this module holds what finetune/ adds on top.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections import defaultdict
from dataclasses import dataclass

from reviewbot.review.hunks import Hunk, HunkError

#: A ```suggestion opening line, and a line that only holds a fence (a closing one).
_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*suggestion")
_CLOSE = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*")


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
    """Separate a ```suggestion block from the prose of a review comment.

    The first closed suggestion block is the suggestion; every suggestion block is
    taken out of the prose. Linear in the comment's length (comments are harvested
    from anyone's pull requests): each fence is matched with the next closing line
    of the same fence, found by bisection.
    """
    lines = comment.replace("\r\n", "\n").split("\n")
    closers: dict[str, list[int]] = defaultdict(list)
    for i, line in enumerate(lines):
        m = _CLOSE.fullmatch(line)
        if m:
            closers[m.group(1)].append(i)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        found = closers.get(m.group(1), []) if m else []
        after = bisect.bisect_right(found, i)
        if m and after < len(found):
            spans.append((i, found[after]))
            i = found[after] + 1
        else:
            i += 1
    if not spans:
        return SplitComment("\n".join(lines).strip(), None)
    kept: list[str] = []
    start = 0
    for first, last in spans:
        kept += [*lines[start:first], ""]
        start = last + 1
    kept += lines[start:]
    prose = "\n".join(kept).strip()
    first, last = spans[0]
    return SplitComment(re.sub(r"\n{3,}", "\n\n", prose), "\n".join(lines[first + 1 : last]))


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
