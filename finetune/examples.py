"""Training examples: one record per (task, template fields, target text).

Every data source (critique-revision JSONL, Hugging Face datasets, CodeReviewer
JSONL, review-comment JSONL, a team's harvested PR history) is turned into
:class:`Example` records; training and evaluation render them into prompts
through :class:`reviewbot.review.prompts.Renderer`, the same renderer the workers use.

``fields["ORIGINAL"]`` is the plain code; what serving shows around it (the file's
path and language, which lines the change made: the ORIGINAL layout of
:func:`reviewbot.review.prompts.render_original`) is rendered from the example's
``context`` by :meth:`Example.original`, exactly as serving renders it for the same
unit: a critique example in the marked view (serving's default, ``changed_lines``
on), revise and summarise examples in the plain view. An example without context
(data that names no file, and examples written before contexts existed) renders
its code alone, as the seed card's data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from reviewbot.review.prompts import (
    Renderer,
    change_marks,
    placeholders,
    render_original,
    task_text,
)
from reviewbot.review.units import ReviewUnit, language_of

Task = Literal["critique", "revise", "summarise"]
TASKS: tuple[str, ...] = ("critique", "revise", "summarise")
#: The keys an example's ``context`` may have (see :attr:`Example.context`).
CONTEXT_KEYS: tuple[str, ...] = ("path", "language", "start_line", "changed", "side")


class ExampleError(ValueError):
    """A record that is not a valid example (the message names the problem)."""


@dataclass(frozen=True)
class Example:
    """One supervised example.

    ``fields`` fills the task template's placeholders (ORIGINAL, CRITIQUE,
    REVISED); ``target`` is the response the model should learn to produce.
    ``source`` names the data source; ``provenance`` says where the record came
    from (file and line, dataset row, PR and comment id, author...).
    """

    task: Task
    fields: dict[str, str]
    target: str
    source: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    """What ORIGINAL's layout shows around the code, as serving knows it of a unit:
    ``path`` (the repository path), ``language`` (only when no path tells it),
    ``start_line`` (the number of ORIGINAL's first line), ``changed`` (the line
    numbers the change added; removed, with ``side`` LEFT) and ``side``. Empty:
    ORIGINAL is the code alone. Build it with :func:`unit_context`."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ExampleError(f"unknown task {self.task!r} (expected one of {', '.join(TASKS)})")
        needed = set(placeholders(task_text(self.task)))
        missing = sorted(needed - set(self.fields))
        if missing:
            raise ExampleError(f"{self.task} example is missing field(s) {', '.join(missing)}")
        if not self.target.strip():
            raise ExampleError(f"{self.task} example has an empty target")
        _check_context(self.context)

    def unit(self) -> ReviewUnit:
        """The review unit of this example's code, as serving would have it."""
        ctx = self.context
        original = self.fields["ORIGINAL"]
        start = int(ctx.get("start_line", 1))
        return ReviewUnit(
            path=str(ctx.get("path", "")),
            start_line=start,
            end_line=start + original.count("\n"),
            hunk_header="",
            original=original,
            side="LEFT" if ctx.get("side") == "LEFT" else "RIGHT",
            added_lines=tuple(int(n) for n in ctx.get("changed", ())),
        )

    def original(self, marked: bool | None = None) -> str:
        """ORIGINAL in the layout serving renders for the same unit
        (:func:`reviewbot.review.prompts.unit_original`): ``marked`` (default: for a
        critique) shows which lines the change made, when the context says."""
        if not self.context:
            return self.fields["ORIGINAL"]
        unit = self.unit()
        marked = self.task == "critique" if marked is None else marked
        language = self.context.get("language") or language_of(unit.path)
        marks = change_marks(unit) if marked else None
        return render_original(unit.original, path=unit.path, language=language, marks=marks)

    def prompt(self, renderer: Renderer) -> str:
        """The full prompt text, exactly as a worker renders it for this task."""
        return renderer.task(self.task, **{**self.fields, "ORIGINAL": self.original()})

    @property
    def key(self) -> str:
        """A content hash (task, fields, target, context): equal examples share it (dedupe)."""
        parts: list[Any] = [self.task, self.fields, self.target]
        if self.context:
            parts.append(self.context)
        data = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Example:
        try:
            return cls(
                task=data["task"],
                fields={str(k): str(v) for k, v in data["fields"].items()},
                target=str(data["target"]),
                source=str(data.get("source", "")),
                provenance=dict(data.get("provenance") or {}),
                context=data.get("context") or {},
            )
        except (KeyError, AttributeError, TypeError) as e:
            raise ExampleError(f"not an example record: {e}") from None


def unit_context(unit: ReviewUnit) -> dict[str, Any]:
    """An example's ``context`` for the code of ``unit`` (what serving shows of it)."""
    ctx: dict[str, Any] = {"path": unit.path, "start_line": unit.start_line}
    if unit.added_lines:
        ctx["changed"] = list(unit.added_lines)
    if unit.side == "LEFT":
        ctx["side"] = "LEFT"
    return ctx


def _check_context(ctx: Any) -> None:
    """ExampleError unless ``ctx`` is a valid :attr:`Example.context`."""
    if not isinstance(ctx, dict):
        raise ExampleError(f"context must be an object, not {type(ctx).__name__}")
    unknown = sorted(set(ctx) - set(CONTEXT_KEYS))
    if unknown:
        raise ExampleError(f"unknown context key(s) {', '.join(unknown)}")
    for key in ("path", "language"):
        if not isinstance(ctx.get(key, ""), str):
            raise ExampleError(f"context {key} must be a string")
    start = ctx.get("start_line", 1)
    if isinstance(start, bool) or not isinstance(start, int) or start < 1:
        raise ExampleError("context start_line must be a positive integer")
    changed = ctx.get("changed", [])
    if not isinstance(changed, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in changed
    ):
        raise ExampleError("context changed must be a list of line numbers")
    if ctx.get("side", "RIGHT") not in ("RIGHT", "LEFT"):
        raise ExampleError("context side must be RIGHT or LEFT")


def write_examples(examples: Iterable[Example], path: str | Path) -> int:
    """Write ``examples`` as JSONL; returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_examples(path: str | Path) -> Iterator[Example]:
    """Examples from an examples JSONL file; errors name the file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield Example.from_json(json.loads(line))
            except (ValueError, ExampleError) as e:
                raise ExampleError(f"{path}:{lineno}: {e}") from None


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """``examples`` without repeats (by :attr:`Example.key`), first one kept."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        if ex.key not in seen:
            seen.add(ex.key)
            out.append(ex)
    return out
