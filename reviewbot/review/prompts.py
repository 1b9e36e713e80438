"""The one prompt renderer: task texts and prompt formats from ``templates/``.

Serving, the CLI and finetune/ all build prompts here, so an adapter trained on
these prompts sees the same text at review time.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

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


def task_text(task: str) -> str:
    """The raw task template (with placeholders): critique/revise/summarise, or ask."""
    tasks = _load("tasks.toml")
    if task not in tasks:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(tasks)}")
    return tasks[task]["text"]


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


def render_task(task: str, instructions: str = "", **fields: str) -> str:
    """The task text with its fields filled in (the CONTENT of a prompt).

    ``instructions`` (a repository's extra review guidelines) are appended
    through the ``instructions`` template when given.
    """
    content = fill(task_text(task), fields)
    if instructions.strip():
        content = fill(task_text("instructions"), {"TASK": content, "INSTRUCTIONS": instructions})
    return content


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True)
class Renderer:
    """Wraps task content or a dialogue in a prompt format.

    ``chat_template`` is needed for the ``chat`` format only (the engine passes
    its tokenizer's template).
    """

    fmt: str = SEED_PROMPT_FORMAT
    chat_template: ChatTemplate | None = None

    def __post_init__(self) -> None:
        spec = format_spec(self.fmt)
        if spec.get("uses_chat_template") and self.chat_template is None:
            raise PromptFormatError(
                f"prompt format {self.fmt!r} needs a tokenizer with a chat template"
            )

    def wrap(self, content: str) -> str:
        """A single-turn prompt around ``content``."""
        return self.dialogue([Turn("user", content)])

    def task(self, task: str, instructions: str = "", **fields: str) -> str:
        """Render a task and wrap it: the full prompt text given to the model."""
        return self.wrap(render_task(task, instructions, **fields))

    def dialogue(self, turns: Sequence[Turn]) -> str:
        """A prompt for a conversation that ends with a user turn."""
        if not turns or turns[-1].role != "user":
            raise ValueError("a dialogue must end with a user turn")
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
            return Renderer(f"{self.fmt}-dialogue").dialogue(turns)
        return fill(spec["prompt"], {"CONTENT": turns[0].text})


def template_fingerprint() -> str:
    """A hash of all template text; recorded in adapter metadata."""
    import hashlib

    h = hashlib.sha256()
    for name in ("tasks.toml", "formats.toml"):
        h.update(resources.files("reviewbot.templates").joinpath(name).read_bytes())
    return h.hexdigest()[:16]
