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
import logging
import re
from dataclasses import dataclass
from typing import Literal

from reviewbot.review.markdown import (
    Fenced,
    blocks,
    code_block,
    fence_for,
    normalize_newlines,
    suggestion_fence,
)
from reviewbot.review.syntax import introduces_error
from reviewbot.review.units import ReviewUnit

__all__ = [
    "REVISION_EMPTY",
    "REVISION_NOT_CODE",
    "REVISION_UNCHANGED",
    "SUGGESTION_UNPARSABLE",
    "Suggestion",
    "SyntaxCheck",
    "apply_suggestion",
    "check_suggestion",
    "code_block",
    "extract_code",
    "fence_for",
    "looks_like_prose",
    "map_revision",
    "normalise_code",
    "postable",
    "revision_problem",
    "suggestion_applies",
    "suggestion_block",
    "without_code_copies",
]

log = logging.getLogger(__name__)

#: Why a model's revision is not posted (counted in the review's statistics).
REVISION_EMPTY = "revision empty"
REVISION_NOT_CODE = "revision not code"
REVISION_UNCHANGED = "revision unchanged"
#: Why a suggestion is not posted when ``unparsable_suggestions = "drop"``.
SUGGESTION_UNPARSABLE = "suggestion does not parse"

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


# --- revisions that are no code, change nothing, or do not parse --------------------------


def normalise_code(text: str) -> str:
    """``text`` with every run of whitespace (line breaks, indentation) made one space."""
    return " ".join(text.split())


#: Words a line of code starts with (compared in lower case, when the word is written
#: all in lower or all in upper case: ``return x`` or ``SELECT id``, not ``Return it``).
_KEYWORDS_TEXT = """
    and assert async await begin break case catch class const continue def del delete do
    elif else end enum except export extern final finally fn for from func function global
    go if impl import in include insert interface lambda let loop match mod module namespace
    new nonlocal not or package pass print private protected pub public raise require rescue
    return select static struct switch template then throw trait try type typedef unless
    unsafe update use using var void when where while with yield
    """
_KEYWORDS = frozenset(_KEYWORDS_TEXT.split())
_COMMENT_OPENERS = ("#", "//", "/*", "*", "--", ";", "%", "<!--", '"""', "'''")
_WORD_RUN = re.compile(r"[A-Za-z]+")
#: A word of code: an operator or bracket, or a name joined by ``.``, ``_`` or ``::``.
_CODE_TOKEN = re.compile(r"[=(){}\[\]<>;|&*+%^~$@\\]|\w[._]\w|::|->")
#: A prose line has at least this many words, and at most this share of code words.
_PROSE_MIN_WORDS = 4
#: An assignment or a comparison: a line holding one is code, however wordy.
_OPERATOR = re.compile(r"(?:^|\s)[-+*/%|&^]?=(?:\s|$)|==|!=|=>|:=")
_PROSE_MAX_CODE_TOKENS = 0.2
#: A revision is prose when at least this share of its new lines are prose lines.
_PROSE_LINE_SHARE = 0.5
#: A revision whose words are this similar to the critique's prose is the critique.
_ECHO_RATIO = 0.9


def _prose_line(line: str) -> bool:
    text = line.strip()
    if text.startswith(_COMMENT_OPENERS):
        return False
    if len(_WORD_RUN.findall(text)) < _PROSE_MIN_WORDS:
        return False
    first = text.split()[0]
    if (first.islower() or first.isupper()) and first.lower().rstrip(":(") in _KEYWORDS:
        return False
    if text.endswith(("{", "}", ";", "(", "[", "=", "\\")) or _OPERATOR.search(text):
        return False
    tokens = text.split()
    code = sum(1 for token in tokens if _CODE_TOKEN.search(token))
    return code / len(tokens) <= _PROSE_MAX_CODE_TOKENS


def looks_like_prose(text: str, code: str = "") -> bool:
    """Whether ``text`` reads as sentences rather than code.

    Lines that are lines of ``code`` (the unit it revises) count as code; of the
    others, at least half must be prose lines: four or more words, at most a fifth
    of them code (an operator, a bracket, ``a.b``, ``a_b``), not opening with a
    keyword or a comment marker, not ending like a statement.
    """
    known = {line.strip() for line in code.split("\n")}
    lines = [line for line in text.split("\n") if line.strip() and line.strip() not in known]
    if not lines:
        return False
    prose = sum(_prose_line(line) for line in lines)
    return prose > 0 and prose / len(lines) >= _PROSE_LINE_SHARE


def _words(text: str) -> list[str]:
    return _WORD_RUN.findall(text.lower())


def _prose_of(critique: str) -> str:
    """The critique without its fenced code blocks."""
    return "\n".join(b for b in blocks(normalize_newlines(critique)) if isinstance(b, str))


def revision_problem(original: str, revised: str, critique: str = "") -> str | None:
    """Why ``revised`` (the code a revise completion holds) is no revision of ``original``,
    or None when it is one.

    - :data:`REVISION_EMPTY`: nothing but whitespace;
    - :data:`REVISION_UNCHANGED`: the original again, after whitespace normalisation
      (:func:`normalise_code`);
    - :data:`REVISION_NOT_CODE`: prose (:func:`looks_like_prose`) where the original
      is not, or the critique's own words again.
    """
    if not revised.strip():
        return REVISION_EMPTY
    if normalise_code(revised) == normalise_code(original):
        return REVISION_UNCHANGED
    if looks_like_prose(revised, original) and not looks_like_prose(original):
        return REVISION_NOT_CODE
    said = _words(_prose_of(critique))
    if said:
        ratio = difflib.SequenceMatcher(None, said, _words(revised), autojunk=False).ratio()
        if ratio >= _ECHO_RATIO:
            return REVISION_NOT_CODE
    return None


@dataclass(frozen=True)
class SyntaxCheck:
    """A suggestion parsed with the file it changes: against the whole file at the head
    (``file``), only the unit's own lines (``hunk``, when the file could not be read),
    or ``unchecked`` (no grammar for the file's language)."""

    path: str
    start_line: int
    against: Literal["file", "hunk", "unchecked"]
    parses: bool = True


def check_suggestion(unit: ReviewUnit, s: Suggestion, file_text: str | None) -> SyntaxCheck:
    """Parse the text ``s`` makes: the file at the head with ``s`` applied, else the unit.

    ``parses`` is False when that introduces a syntax error the text did not have
    (:func:`reviewbot.review.syntax.introduces_error`). A file whose lines
    ``unit.start_line``..``unit.end_line`` are not the unit's is not the head the
    diff was made at: the unit's lines are parsed instead (logged).
    """
    if file_text is not None:
        lines = file_text.split("\n")
        held = lines[unit.start_line - 1 : unit.end_line]
        if [x.rstrip() for x in held] == [y.rstrip() for y in unit.lines]:
            after = "\n".join(apply_suggestion(lines, 1, s))
            verdict = introduces_error(file_text, after, unit.path)
            if verdict is not None:
                return SyntaxCheck(unit.path, s.start, "file", not verdict)
            return SyntaxCheck(unit.path, s.start, "unchecked")
        log.warning(
            "%s: lines %d-%d of the file are not the diff's; parsing the hunk only",
            unit.path,
            unit.start_line,
            unit.end_line,
        )
    after = "\n".join(apply_suggestion(unit.lines, unit.start_line, s))
    verdict = introduces_error(unit.original, after, unit.path)
    if verdict is None:
        return SyntaxCheck(unit.path, s.start, "unchecked")
    return SyntaxCheck(unit.path, s.start, "hunk", not verdict)


#: A fenced block of a critique this similar to the unit (or to its revision), after
#: whitespace normalisation, is a copy of it.
_COPY_RATIO = 0.6


def _is_copy(code: str, of: str) -> bool:
    a, b = normalise_code(code), normalise_code(of)
    if not a or not b:
        return False
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return matcher.real_quick_ratio() >= _COPY_RATIO and matcher.ratio() >= _COPY_RATIO


def without_code_copies(critique: str, codes: tuple[str, ...]) -> str:
    """``critique`` without its fenced blocks that copy one of ``codes`` as a whole.

    A comment that carries the revision (as a suggestion or a plain block) shows the
    code once: the critique's own copy of the unit goes.
    """
    parts = blocks(normalize_newlines(critique))
    kept = [
        b if isinstance(b, str) else code_block(b.code, b.language)
        for b in parts
        if isinstance(b, str) or not any(_is_copy(b.code, code) for code in codes)
    ]
    if len(kept) == len(parts):
        return critique
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
