"""Markdown safety: untrusted text made inert before reviewbot posts it (pure).

Everything reviewbot posts that came from the model, from a file name, from a
repository's config or from a user goes through :func:`inert` (prose, code as
written by someone else) or :func:`code_span` (a path or name) before it is
joined into reviewbot's own Markdown. The result:

- contains no ``<!--``: in prose ``<`` before a letter, ``/``, ``!`` or ``?`` is
  written ``&lt;``; in code (where entities are not decoded) a zero-width space
  follows the ``<``, so no HTML comment, hence no hidden reviewbot marker
  (``<!-- reviewbot:... -->``), can be smuggled in and the code still reads the same;
- mentions nobody: a zero-width joiner follows an ``@`` that would start a
  ``@user`` or ``@org/team`` mention (also when written ``&#64;``/``&commat;``);
  an e-mail address (``@`` after a letter, digit or ``_``) is left as it is;
- holds no raw HTML (``<img>``, ``<details>``, ``<script>``...): see ``<`` above;
- has no ``suggestion`` fence: every fenced code block is written again with a
  backtick fence longer than any backtick run inside it (:func:`fence_for`), so
  nothing inside can close it, and a ``suggestion`` info string is dropped: the
  only committable suggestion is the one the pipeline builds from an
  apply-checked :class:`~reviewbot.review.suggestions.Suggestion`
  (``suggestion=`` keeps exactly that one);
- closes what it opens: an unclosed fence ends with the text, a backtick run
  without its partner is escaped, a trailing backslash is doubled, so the text
  cannot swallow or escape the Markdown reviewbot writes after it.

Code spans are found as CommonMark finds them; since in a paragraph of several
lines a renderer could pair backticks otherwise (a heading or a list item
inside it), the text of those code spans gets the same mention and ``<``
protection, with invisible characters, so that either reading is inert.
Fenced blocks need no such care: they are re-emitted in a canonical form,
which every reader parses alike.
"""

from __future__ import annotations

import bisect
import re
import string
from dataclasses import dataclass

ZWSP = "\u200b"
"""Zero-width space: breaks ``<!--`` and tags inside code without changing how it reads."""
ZWJ = "\u200d"
"""Zero-width joiner: follows an ``@`` so that it mentions nobody."""

_WORD = frozenset(string.ascii_letters + string.digits + "_")
_NAME_START = frozenset(string.ascii_letters + string.digits)
_TAG_START = frozenset(string.ascii_letters + "/!?")
_ESCAPABLE = frozenset(string.punctuation)
_SPECIAL = re.compile(r"[\\`<@&]")
_AT_ENTITY = re.compile(r"&(?:commat|#0*64|#[xX]0*40);")
_CODE_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@(?=[A-Za-z0-9]|\Z)")
_BACKTICKS = re.compile(r"`+")
_FENCE_RUN = re.compile(r"`{3,}|~{3,}")
_BLANK = re.compile(r"(\n[ \t]*(?=\n))+\n")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,40}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r"}


def break_comments(text: str) -> str:
    """``text`` with every ``<!--`` broken by a zero-width space (reads the same)."""
    return text.replace("<!--", f"<{ZWSP}!--")


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR (both line endings in Markdown) as ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- fenced code blocks -------------------------------------------------------------------


@dataclass(frozen=True)
class Fenced:
    """A fenced code block of a Markdown text: its info string and its lines."""

    info: str
    lines: tuple[str, ...]
    closed: bool

    @property
    def code(self) -> str:
        return "\n".join(self.lines)

    @property
    def language(self) -> str:
        """The info string's first word when it is a plain language name, else ``""``."""
        word = self.info.split(maxsplit=1)[0] if self.info.strip() else ""
        return word if _LANGUAGE.fullmatch(word) else ""


def _container_end(line: str) -> int:
    """Where ``line``'s block-quote and list-item markers (and the blanks after) end."""
    n, i = len(line), 0
    while True:
        j = i
        while j < n and line[j] in " \t":
            j += 1
        if j < n and line[j] == ">":
            i = j + 1
            continue
        if j + 1 < n and line[j] in "-*+" and line[j + 1] in " \t":
            i = j + 2
            continue
        k = j
        while k < n and k - j < 9 and line[k] in string.digits:
            k += 1
        if j < k and k + 1 < n and line[k] in ".)" and line[k + 1] in " \t":
            i = k + 2
            continue
        return j


def _opener(line: str) -> tuple[int, str, str] | None:
    """(indent, fence, info) when ``line`` opens a fenced code block.

    Any indentation counts, and so do block-quote and list-item markers before
    the fence (``> ```suggestion``, ``- ~~~``): wherever a renderer could see a
    fence, this sees one. A backtick fence whose info string holds a backtick is
    no fence (CommonMark).
    """
    start = _container_end(line)
    m = _FENCE_RUN.match(line, start)
    if m is None:
        return None
    fence, info = m.group(0), line[m.end() :]
    if fence[0] == "`" and "`" in info:
        return None
    return start, fence, info.strip()


def _closes(line: str, fence: str) -> bool:
    stripped = line[_container_end(line) :].rstrip(" \t")
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


def _dedent(line: str, indent: int) -> str:
    """``line`` without up to ``indent`` leading blanks or ``>`` (its fence's container)."""
    i = 0
    while i < min(indent, len(line)) and line[i] in " \t>":
        i += 1
    return line[i:]


def blocks(text: str) -> list[str | Fenced]:
    """``text`` (``\\n`` line endings) as prose chunks and fenced code blocks, in order.

    Linear: every line is looked at once. An unclosed fence runs to the end.
    """
    lines = text.split("\n")
    out: list[str | Fenced] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        opened = _opener(lines[i])
        if opened is None:
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            out.append("\n".join(prose))
            prose = []
        indent, fence, info = opened
        body: list[str] = []
        i += 1
        while i < len(lines) and not _closes(lines[i], fence):
            body.append(_dedent(lines[i], indent))
            i += 1
        closed = i < len(lines)
        if not closed and body and not body[-1].strip():
            body.pop()  # the text's final line break, not a line of code
        out.append(Fenced(info, tuple(body), closed))
        i += 1
    if prose:
        out.append("\n".join(prose))
    return out


def fence_for(code: str) -> str:
    """A backtick fence longer than any backtick run inside ``code``."""
    longest = max((len(m.group(0)) for m in _BACKTICKS.finditer(code)), default=0)
    return "`" * max(3, longest + 1)


def code_block(code: str, lang: str = "") -> str:
    """A fenced code block of ``code`` that nothing inside can close or turn into a comment.

    ``lang`` is kept only when it is a plain language name, never ``suggestion``
    (a committable suggestion is :func:`suggestion_fence`'s, for an apply-checked one).
    """
    code = break_comments(normalize_newlines(code))
    lang = lang if _LANGUAGE.fullmatch(lang) and not _is_suggestion(lang) else ""
    fence = fence_for(code)
    return f"{fence}{lang}\n{code}\n{fence}"


def _is_suggestion(info: str) -> bool:
    return info.strip().lower().startswith("suggestion")


# --- prose and code spans -----------------------------------------------------------------


def _code_text(text: str) -> str:
    """Inside a code span: ``<``-tags and mentions broken by invisible characters."""
    return _MENTION.sub(f"@{ZWJ}", _CODE_TAG.sub(f"<{ZWSP}", text))


def _runs(paragraph: str) -> dict[int, list[int]]:
    """Start offsets of the maximal backtick runs of ``paragraph``, by length."""
    runs: dict[int, list[int]] = {}
    for m in _BACKTICKS.finditer(paragraph):
        runs.setdefault(len(m.group(0)), []).append(m.start())
    return runs


def _inline(p: str) -> str:
    """One paragraph made inert (code spans kept as code spans).

    Within one line, code spans are exactly where CommonMark puts them; across
    lines, block structure (a list item, a heading, a table row) can pair the
    backticks otherwise, so the text of a span in a paragraph of several lines
    is protected as prose would be, with invisible characters.
    """
    runs = _runs(p)
    guard = "\n" in p
    out: list[str] = []
    i, n = 0, len(p)
    while i < n:
        m = _SPECIAL.search(p, i)
        if m is None:
            out.append(p[i:])
            break
        j = m.start()
        out.append(p[i:j])
        c = p[j]
        if c == "\\":
            nxt = p[j + 1] if j + 1 < n else ""
            if nxt == "<":
                out.append("&lt;")
            elif nxt == "@":
                follows = p[j + 2] if j + 2 < n else ""
                out.append(f"\\@{ZWJ}" if not follows or follows in _NAME_START else "\\@")
            elif nxt in _ESCAPABLE and nxt:
                out.append(p[j : j + 2])
            else:
                out.append("\\")
                i = j + 1
                continue
            i = j + 2
        elif c == "`":
            end = j
            while end < n and p[end] == "`":
                end += 1
            length = end - j
            starts = runs.get(length, [])
            k = bisect.bisect_left(starts, end)
            if k < len(starts):
                close = starts[k]
                code = _code_text(p[end:close]) if guard else p[end:close]
                out.append(p[j:end] + code + p[close : close + length])
                i = close + length
            else:
                out.append("\\`" * length)  # no partner: literal, and it stays literal
                i = end
        elif c == "<":
            out.append("&lt;" if j + 1 == n or p[j + 1] in _TAG_START else "<")
            i = j + 1
        elif c == "@":
            before = p[j - 1] if j else ""
            mention = before not in _WORD and (j + 1 == n or p[j + 1] in _NAME_START)
            out.append(f"@{ZWJ}" if mention else "@")
            i = j + 1
        else:  # "&"
            entity = _AT_ENTITY.match(p, j)
            if entity is not None:
                out.append(f"@{ZWJ}")
                i = entity.end()
            else:
                out.append("&")
                i = j + 1
    return "".join(out)


def _prose(text: str) -> str:
    """Prose made inert paragraph by paragraph (code spans never cross a blank line)."""
    out: list[str] = []
    pos = 0
    for m in _BLANK.finditer(text):
        out += [_inline(text[pos : m.start()]), m.group(0)]
        pos = m.end()
    out.append(_inline(text[pos:]))
    return "".join(out)


def inert(text: str, suggestion: str | None = None) -> str:
    """Untrusted Markdown (model output, a user's text, a config value) made inert.

    See the module docstring for what that means. Reviewbot's own Markdown is
    joined around the result, never inside it. ``suggestion``: the text of the
    apply-checked suggestion the pipeline built for this text; a ``suggestion``
    fence with exactly that content keeps its info string (once), every other
    becomes a plain code block.
    """
    out: list[str] = []
    for block in blocks(normalize_newlines(text)):
        if isinstance(block, str):
            out.append(_prose(block))
        elif _is_suggestion(block.info) and block.code == suggestion and "<!--" not in suggestion:
            out.append(suggestion_fence(block.code))
            suggestion = None
        else:
            out.append(code_block(block.code, block.language))
    result = "\n".join(out)
    trailing = len(result) - len(result.rstrip("\\"))
    if trailing % 2:
        result += "\\"  # a lone backslash at the end would escape what follows
    return break_comments(result)


def suggestion_fence(text: str) -> str:
    """The Markdown of a committable suggestion of ``text``.

    Only for an apply-checked suggestion: ``text`` goes into the suggestion
    verbatim (GitHub commits it as written), so one holding ``<!--`` is refused
    (ValueError); the caller posts it as a plain :func:`code_block` instead.
    """
    text = normalize_newlines(text)
    if "<!--" in text:
        raise ValueError("a suggestion holding '<!--' cannot be posted as a suggestion")
    fence = fence_for(text)
    return f"{fence}suggestion\n{text}\n{fence}"


def _control_name(m: re.Match[str]) -> str:
    char = m.group(0)
    return _CONTROL_NAMES.get(char, f"\\x{ord(char):02x}")


def code_span(text: str) -> str:
    """``text`` (a path, a name) as one inline code span that nothing can break out of.

    Line breaks and other control characters are shown escaped (``\\n``), the
    backtick delimiter is longer than any backtick run inside, and ``<!--`` is
    broken; mentions need nothing, GitHub does not read them in code.
    """
    shown = break_comments(_CONTROL.sub(_control_name, text))
    if not shown:
        return "` `"
    longest = max((len(m.group(0)) for m in _BACKTICKS.finditer(shown)), default=0)
    tick = "`" * (longest + 1)
    pad = " " if shown[0] in "` " or shown[-1] in "` " else ""
    return f"{tick}{pad}{shown}{pad}{tick}"


def readable(text: str) -> str:
    """reviewbot's posted text with the invisible protection taken out, for model input.

    Undoes what :func:`inert` adds (``&lt;``, zero-width characters); only for
    text that goes to the model, never for text that is posted.
    """
    return text.replace("&lt;", "<").replace(f"<{ZWSP}", "<").replace(f"@{ZWJ}", "@")
