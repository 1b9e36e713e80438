"""The one prompt renderer: task texts and prompt formats from ``templates/``.

Serving, the CLI and finetune/ all build prompts here, so an adapter trained on
these prompts sees the same text at review time. The code a task is about fills
``{ORIGINAL}`` in one documented, versioned layout (:func:`render_original`,
:data:`ORIGINAL_LAYOUT`): the file's path and language, and which lines the pull
request changed; a repository's guidelines (``extra_instructions`` and the
``path_instructions`` of the unit's path, :func:`unit_instructions`) and its
response language (:func:`with_language`) are appended through the templates.

Prompts are inert to the tokenizer: a :class:`Renderer` that knows its
tokenizer's special-token strings (``<|im_start|>``, ``</s>``...; the engine's
renderer does, see :func:`reviewbot.model.adapters.make_renderer`) neutralises
them in the text of every turn — the task text with the diff, the comments, the
instructions, the question — before the format's template wraps it
(:func:`neutralise`), and makes sure no special token can form across the edge
between a turn's text and the template around it (:func:`guard_edges`). The
template's own special tokens (a chat template's role markers) stay special,
and untrusted text can never become one, in serving and in training alike,
since both tokenize the prompt this renderer made.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Literal

from reviewbot.review.hunks import HunkError, parse_hunk
from reviewbot.review.markdown import ZWSP
from reviewbot.review.units import ReviewUnit
from reviewbot.settings.defaults import SEED_PROMPT_FORMAT

#: The seed model card's review tasks (finetune/ trains on these).
TASKS = ("critique", "revise", "summarise")

_PLACEHOLDER = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")

Role = Literal["user", "assistant"]
#: Renders chat messages to text, e.g. a tokenizer's ``apply_chat_template``.
ChatTemplate = Callable[[list[dict[str, str]]], str]


class MissingPlaceholder(KeyError):
    """A template placeholder was given no value."""


class PromptFormatError(ValueError):
    """An unknown prompt format, or ``chat`` without a chat template."""


@cache
def _load(name: str) -> dict:
    text = resources.files("reviewbot.templates").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


#: The template files holding task texts: the seed tasks (what adapters are trained on),
#: then /describe's.
TASK_FILES = ("tasks.toml", "describe.toml")


def task_text(task: str) -> str:
    """The raw task template (with placeholders): critique/revise/summarise, ask, or
    /describe's describe-file and describe."""
    known: list[str] = []
    for name in TASK_FILES:
        tasks = _load(name)
        if task in tasks:
            return tasks[task]["text"]
        known += tasks
    raise KeyError(f"unknown task {task!r}; known: {', '.join(known)}")


def format_names() -> tuple[str, ...]:
    """The prompt formats templates/formats.toml defines (settings.defaults lists them)."""
    return tuple(_load("formats.toml"))


def format_spec(fmt: str) -> dict:
    formats = _load("formats.toml")
    if fmt not in formats:
        raise PromptFormatError(f"unknown prompt format {fmt!r}; known: {', '.join(formats)}")
    return formats[fmt]


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def fill(template: str, fields: Mapping[str, str]) -> str:
    """Substitute ``{NAME}`` placeholders in one pass; a missing one raises.

    Values are inserted verbatim: braces or placeholder-like text inside code
    are never substituted again.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in fields:
            raise MissingPlaceholder(f"placeholder {{{name}}} has no value")
        value = fields[name]
        if value is None:
            raise MissingPlaceholder(f"placeholder {{{name}}} is None")
        return str(value)

    return _PLACEHOLDER.sub(sub, template)


def render_task(task: str, instructions: str = "", language: str = "", **fields: str) -> str:
    """The task text with its fields filled in (the CONTENT of a prompt).

    ``instructions`` (a repository's extra review guidelines) are appended
    through the ``instructions`` template when given, then the ``language``
    instruction (:func:`with_language`) when a response language is given.
    """
    content = fill(task_text(task), fields)
    if instructions.strip():
        content = fill(task_text("instructions"), {"TASK": content, "INSTRUCTIONS": instructions})
    return with_language(content, language)


#: Names of common language codes (ISO 639-1), for the ``language`` instruction.
LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic",
    "bg": "Bulgarian",
    "ca": "Catalan",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "nb": "Norwegian Bokmål",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sr": "Serbian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}


def language_name(language: str) -> str:
    """The name the ``language`` instruction uses for a repository's ``response_language``.

    A known code is named (``de`` → German, ``pt-BR`` → Portuguese (BR)); anything
    else (a name such as ``German``, an unknown code) is used as written.
    """
    value = language.strip()
    base, _, region = value.partition("-")
    name = LANGUAGE_NAMES.get(base.lower()) if len(base) == 2 else None
    if name is None:
        return value
    return f"{name} ({region})" if region else name


def with_language(text: str, language: str) -> str:
    """``text`` (a task, or the last turn of /ask) with the ``language`` instruction
    appended when ``language`` is given, else unchanged."""
    if not language.strip():
        return text
    return fill(task_text("language"), {"TASK": text, "LANGUAGE": language_name(language)})


# --- ORIGINAL: the code a task is about ------------------------------------------------------

#: The version of the layout of ORIGINAL (:func:`render_original`): recorded in an
#: adapter's metadata (``original_layout``) and part of :func:`template_fingerprint`.
#: 0 is the plain code of the seed card, before reviewbot had a layout.
ORIGINAL_LAYOUT = 1

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _one_line(text: str) -> str:
    """``text`` on one line: characters that are not printable (newlines, controls, line
    separators) written as escapes (``\\n``, ``\\x07``, ``\\u2028``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _ESCAPES.get(ch) or ascii(ch)[1:-1] for ch in text)


def render_original(
    code: str,
    *,
    path: str = "",
    language: str = "",
    marks: Sequence[str] | None = None,
) -> str:
    """What fills ``{ORIGINAL}``: the code under a header saying where it is from.

    The layout, version :data:`ORIGINAL_LAYOUT` (1); here a unit of ``app/cache.py``
    whose lines 5 and 7 the pull request changed, in the *marked* view::

        FILE: app/cache.py (Python)
        CHANGED: lines starting with "+"
         class Cache:
        +    def __init__(self, ttl, items={}):
                 self.ttl = ttl
        +        self.items = items

    - ``FILE: <path> (<language>)``: the repository path, kept on one line (newlines
      and other unprintable characters escaped as ``\\n``, ``\\x07``...); the language
      (:func:`reviewbot.review.units.language_of`), with its parentheses left out when
      it is unknown. Data without a path but with a language has ``LANGUAGE: <language>``
      instead; with neither, there is no header line.
    - The marked view only (``marks``: one character per code line): ``CHANGED: lines
      starting with "+"`` (or, for a pure deletion reviewed on the old side,
      ``REMOVED: lines starting with "-"``), then each code line behind its mark:
      ``+`` changed (added) by the pull request, ``-`` removed, a space for
      unchanged context. The *plain* view (``marks`` None) has the code as it is.
    - Neither header nor marks: ORIGINAL is the code alone, exactly as the seed card's
      data has it (layout 0), so older data renders as it always did.

    Which view a task gets (:func:`unit_original`): critique the marked one (when the
    ``changed_lines`` option is on; the plain one when off), revise and summarise
    always the plain one. The revision is mapped line by line onto the unit's code
    and offered as a committable suggestion, and a model repeats what it is shown:
    shown plain code, it answers with plain code, while change markers would come
    back inside the suggestion. The header is one line of different shape from code
    (a label in capitals, as the seed's own ``ORIGINAL:`` and ``COMMENT:``), above the
    code, so the lines of the code keep their order and numbering. The ``{ORIGINAL}``
    placeholder of the seed task texts stays where it was: their words are unchanged.
    """
    header = []
    if path:
        header.append(f"FILE: {_one_line(path)}" + (f" ({language})" if language else ""))
    elif language:
        header.append(f"LANGUAGE: {language}")
    lines = code.split("\n")
    if marks is not None:
        if len(marks) != len(lines):
            raise ValueError(f"{len(marks)} marks for {len(lines)} lines of code")
        removal = "-" in marks
        header.append(
            'REMOVED: lines starting with "-"' if removal else 'CHANGED: lines starting with "+"'
        )
        lines = [m + line for m, line in zip(marks, lines, strict=True)]
    return "\n".join([*header, *lines])


def change_marks(unit: ReviewUnit) -> list[str] | None:
    """One mark per line of ``unit`` (``+``/``-`` for its changed lines, else a space),
    or None when the unit records no changed line (nothing to mark)."""
    if not unit.added_lines:
        return None
    changed = set(unit.added_lines)
    mark = "-" if unit.side == "LEFT" else "+"
    return [mark if unit.start_line + i in changed else " " for i in range(len(unit.lines))]


def unit_original(unit: ReviewUnit, marked: bool = False) -> str:
    """ORIGINAL for ``unit`` (:func:`render_original`): the marked view (critique, with
    the ``changed_lines`` option on) or the plain view (revise, summarise)."""
    return render_original(
        unit.original,
        path=unit.path,
        language=unit.language,
        marks=change_marks(unit) if marked else None,
    )


def hunk_original(diff_hunk: str, path: str, marked: bool, side: str | None = "RIGHT") -> str:
    """ORIGINAL for the code of a review thread, from GitHub's ``diff_hunk`` (which ends
    at the commented line): the new side of the hunk as a unit of ``path``
    (:func:`unit_original`). A thread on removed lines (``side`` LEFT), or a hunk
    that does not parse, is given as the diff hunk itself."""
    if side == "LEFT":
        return diff_hunk
    try:
        unit = parse_hunk(diff_hunk).unit(path)
    except HunkError:
        return diff_hunk
    return unit_original(unit, marked)


def unit_instructions(path: str, extra: str, path_instructions: Sequence[tuple[str, str]]) -> str:
    """The review guidelines for a file at ``path``: the repository's ``extra_instructions``,
    then the instructions of every ``path_instructions`` glob that matches ``path``
    (:func:`fnmatch.fnmatch`, as every glob of the configuration), each in its own paragraph."""
    parts = [extra.strip()] + [
        text.strip() for glob, text in path_instructions if fnmatch.fnmatch(path, glob)
    ]
    return "\n\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


# --- special tokens -------------------------------------------------------------------------


@cache
def _special_pattern(specials: tuple[str, ...]) -> re.Pattern[str] | None:
    longest_first = sorted(set(specials), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, longest_first))) if longest_first else None


def neutralise(text: str, specials: Sequence[str]) -> str:
    """``text`` with no occurrence of any string of ``specials`` left.

    A zero-width space goes after the first character of each occurrence
    (``<|im_end|>`` → ``<\u200b|im_end|>``): the text reads the same, and the
    tokenizer, which only makes a special token of the exact string, sees
    ordinary text. Strings of one character cannot be broken and must not be
    passed (:func:`reviewbot.model.adapters.special_token_strings` leaves them out).
    """
    pattern = _special_pattern(tuple(specials))
    if pattern is None:
        return text
    for _ in range(max(map(len, specials)) + 1):  # overlapping matches: one more pass each
        broken = pattern.sub(lambda m: f"{m[0][0]}{ZWSP}{m[0][1:]}", text)
        if broken == text:
            return text
        text = broken
    raise ValueError("special-token strings that cannot be neutralised")  # pragma: no cover


def _crosses(left: str, right: str, specials: Sequence[str]) -> bool:
    """Whether a string of ``specials`` occurs across the boundary of ``left + right``."""
    reach = max(map(len, specials)) - 1
    tail, head = left[max(0, len(left) - reach) :], right[:reach]
    window = tail + head
    for s in specials:
        at = window.find(s)
        while at != -1:
            if at < len(tail) < at + len(s):
                return True
            at = window.find(s, at + 1)
    return False


def _may_start_inside(text: str, specials: Sequence[str]) -> bool:
    """Whether ``text`` could complete a special token begun before it (neighbour unknown;
    the template may strip the text's leading whitespace)."""
    return any(
        s[k:].startswith(t) or t.startswith(s[k:])
        for t in {text, text.lstrip()}
        for s in specials
        for k in range(1, len(s))
    )


def _may_end_inside(text: str, specials: Sequence[str]) -> bool:
    """Whether ``text`` could begin a special token completed after it (neighbour unknown;
    the template may strip the text's trailing whitespace)."""
    return any(
        s[:k].endswith(t) or t.endswith(s[:k])
        for t in {text, text.rstrip()}
        for s in specials
        for k in range(1, len(s))
    )


def guard_edges(text: str, before: str | None, after: str | None, specials: Sequence[str]) -> str:
    """``text`` (already neutralised) with a zero-width space at each edge where a
    special token would form across it and the template text around it.

    ``before``/``after``: the template text on each side; None when unknown, then
    an edge is guarded whenever some special token could span it (also once the
    template strips the text's whitespace: the zero-width space is no whitespace).
    """
    if not text or not specials:
        return text
    if before is None:
        opens = _may_start_inside(text, specials)
    else:
        opens = _crosses(before, text + (after or ""), specials)
    if opens:
        text = ZWSP + text
    if after is None:
        closes = _may_end_inside(text, specials)
    else:
        closes = _crosses((before or "") + text, after, specials)
    if closes:
        text = text + ZWSP
    return text


def _pieces(rendered: str, marks: Sequence[str]) -> list[str] | None:
    """``rendered`` split at ``marks`` (each once, in order), or None."""
    pieces: list[str] = []
    rest = rendered
    for mark in marks:
        if rendered.count(mark) != 1 or mark not in rest:
            return None
        head, rest = rest.split(mark, 1)
        pieces.append(head)
    return [*pieces, rest]


def _interleave(pieces: Sequence[str], texts: Sequence[str]) -> str:
    return "".join(p + t for p, t in zip(pieces, texts, strict=False)) + pieces[-1]


# --- the renderer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Renderer:
    """Wraps task content or a dialogue in a prompt format.

    ``chat_template`` is needed for the ``chat`` format only (the engine passes
    its tokenizer's template). ``special_tokens``: the strings the tokenizer
    turns into special tokens; the text of every turn is kept from forming one
    (module docstring). Empty: the text is rendered as it is.
    """

    fmt: str = SEED_PROMPT_FORMAT
    chat_template: ChatTemplate | None = None
    special_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        spec = format_spec(self.fmt)
        if spec.get("uses_chat_template") and self.chat_template is None:
            raise PromptFormatError(
                f"prompt format {self.fmt!r} needs a tokenizer with a chat template"
            )

    def wrap(self, content: str) -> str:
        """A single-turn prompt around ``content``."""
        return self.dialogue([Turn("user", content)])

    def task(self, task: str, instructions: str = "", language: str = "", **fields: str) -> str:
        """Render a task and wrap it: the full prompt text given to the model."""
        return self.wrap(render_task(task, instructions, language, **fields))

    def neutralise(self, text: str) -> str:
        """``text`` with none of the tokenizer's special-token strings left in it."""
        return neutralise(text, self.special_tokens)

    def dialogue(self, turns: Sequence[Turn]) -> str:
        """A prompt for a conversation that ends with a user turn.

        With ``special_tokens``, each turn's text is neutralised and its edges
        guarded against the template text actually around it: the template is
        rendered once with a placeholder mark per turn to see that text. A
        template that does not insert the text verbatim (one that trims it, say)
        gets both edges guarded whenever a special token could span them.
        """
        if not turns or turns[-1].role != "user":
            raise ValueError("a dialogue must end with a user turn")
        if not self.special_tokens:
            return self._render(turns)
        specials = self.special_tokens
        texts = [self.neutralise(t.text) for t in turns]
        marks = [f"\ue000{i}\ue001" for i in range(len(turns))]
        skeleton = self._render([Turn(t.role, m) for t, m in zip(turns, marks, strict=True)])
        pieces = _pieces(skeleton, marks)
        direct = self._render([Turn(t.role, x) for t, x in zip(turns, texts, strict=True)])
        if pieces is not None and _interleave(pieces, texts) == direct:
            edges = zip(texts, pieces, pieces[1:], strict=False)
            texts = [guard_edges(x, before, after, specials) for x, before, after in edges]
        else:
            texts = [guard_edges(x, None, None, specials) for x in texts]
        return self._render([Turn(t.role, x) for t, x in zip(turns, texts, strict=True)])

    def _render(self, turns: Sequence[Turn]) -> str:
        spec = format_spec(self.fmt)
        if spec.get("uses_chat_template"):
            assert self.chat_template is not None
            return self.chat_template([{"role": t.role, "content": t.text} for t in turns])
        if "wrapper" in spec:
            names = {"user": "human", "assistant": "assistant"}
            content = spec["separator"].join(
                fill(spec[names[t.role]], {"TEXT": t.text}) for t in turns
            )
            return fill(format_spec(spec["wrapper"])["prompt"], {"CONTENT": content})
        if len(turns) != 1:
            # A single-turn format: history is rendered through its dialogue variant.
            return replace(self, fmt=f"{self.fmt}-dialogue")._render(turns)
        return fill(spec["prompt"], {"CONTENT": turns[0].text})


def template_fingerprint() -> str:
    """A hash of all template text and the ORIGINAL layout's version; recorded in
    adapter metadata."""
    import hashlib

    h = hashlib.sha256()
    for name in ("tasks.toml", "formats.toml"):
        h.update(resources.files("reviewbot.templates").joinpath(name).read_bytes())
    h.update(f"original_layout={ORIGINAL_LAYOUT}".encode())
    return h.hexdigest()[:16]
