"""Map a model's revision of a unit onto a committable GitHub ```suggestion.

A suggestion replaces exactly the original lines ``start``..``end`` (side RIGHT)
with ``replacement``. It is only produced when applying it to the unit's
original text reproduces the revision exactly (the apply-check). It is posted
as a committable suggestion only when its text holds no ``<!--``
(:func:`postable`): a suggestion is committed as written, so it cannot be made
inert; such a revision is shown as a plain (inert) code block instead.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from reviewbot.review.markdown import (
    Fenced,
    blocks,
    code_block,
    fence_for,
    normalize_newlines,
    suggestion_fence,
)
from reviewbot.review.units import ReviewUnit

__all__ = [
    "Suggestion",
    "apply_suggestion",
    "code_block",
    "extract_code",
    "fence_for",
    "map_revision",
    "postable",
    "suggestion_applies",
    "suggestion_block",
]

_LABEL = re.compile(r"^\s*(?:REVISED|REVISION|REVISED CODE|Revised code)\s*:\s*\n", re.I)


@dataclass(frozen=True)
class Suggestion:
    """Replace new-side lines ``start``..``end`` (inclusive) with ``replacement``."""

    start: int
    end: int
    replacement: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.replacement)


def extract_code(completion: str) -> str:
    """The code in a revise completion: its first closed fenced block, else the text itself.

    Fences are found line by line (:func:`reviewbot.review.markdown.blocks`), in
    time linear in the completion, whatever it holds.
    """
    for block in blocks(normalize_newlines(completion)):
        if isinstance(block, Fenced) and block.closed:
            return block.code
    text = _LABEL.sub("", completion, count=1)
    return text.strip("\n").rstrip()


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x.rstrip() != y.rstrip():
            break
        n += 1
    return n


def _common_suffix(a: list[str], b: list[str], limit: int) -> int:
    n = 0
    while n < limit and a[len(a) - 1 - n].rstrip() == b[len(b) - 1 - n].rstrip():
        n += 1
    return n


def apply_suggestion(original: list[str], first_line: int, s: Suggestion) -> list[str]:
    """The unit's lines after the suggestion is applied (what GitHub would commit)."""
    lo, hi = s.start - first_line, s.end - first_line + 1
    return original[:lo] + list(s.replacement) + original[hi:]


def map_revision(unit: ReviewUnit, revised: str, min_similarity: float = 0.3) -> Suggestion | None:
    """A suggestion on exactly the changed lines of ``unit``, or None.

    Unchanged leading and trailing lines (compared ignoring trailing
    whitespace) are trimmed; what remains of the original is the anchor range.
    A pure insertion is widened by one neighbouring line, since a suggestion
    must replace at least one line. None when the revision changes nothing, is
    empty, is unrelated to the code, or fails the apply-check. Whether the
    suggestion may be posted as one is :func:`postable`'s question.
    """
    if unit.side != "RIGHT":
        return None
    orig = unit.lines
    rev = revised.split("\n")
    if not revised.strip() or [x.rstrip() for x in orig] == [y.rstrip() for y in rev]:
        return None
    p = _common_prefix(orig, rev)
    s = _common_suffix(orig, rev, min(len(orig), len(rev)) - p)
    if p == 0 and s == 0:
        similarity = difflib.SequenceMatcher(None, "\n".join(orig), revised).ratio()
        if similarity < min_similarity:
            return None
    lo, hi = p, len(orig) - s  # original[lo:hi] is replaced by rev[p:len(rev)-s]
    replacement = rev[p : len(rev) - s]
    if lo == hi:  # pure insertion: include a neighbouring original line
        if lo > 0:
            lo -= 1
            replacement = [orig[lo], *replacement]
        else:
            replacement = [*replacement, orig[hi]]
            hi += 1
    suggestion = Suggestion(unit.start_line + lo, unit.start_line + hi - 1, tuple(replacement))
    if not suggestion_applies(unit, suggestion, revised):
        return None
    return suggestion


def postable(s: Suggestion) -> bool:
    """Whether ``s`` may be posted as a committable suggestion: its text holds no ``<!--``."""
    return "<!--" not in s.text


def suggestion_applies(unit: ReviewUnit, s: Suggestion, revised: str) -> bool:
    """The apply-check: the suggestion stays inside the unit and reproduces ``revised``."""
    if not (unit.start_line <= s.start <= s.end <= unit.end_line):
        return False
    applied = apply_suggestion(unit.lines, unit.start_line, s)
    return [x.rstrip() for x in applied] == [y.rstrip() for y in revised.split("\n")]


def suggestion_block(s: Suggestion) -> str:
    """Markdown for a GitHub suggestion; code fences inside cannot break out.

    Only for a :func:`postable` suggestion (ValueError otherwise).
    """
    return suggestion_fence(s.text)
