"""Training examples: one record per (task, template fields, target text).

Every data source (critique-revision JSONL, Hugging Face datasets, CodeReviewer
JSONL, review-comment JSONL, a team's harvested PR history) is turned into
:class:`Example` records; training and evaluation render them into prompts
through :class:`reviewbot.review.prompts.Renderer`, the same renderer the workers use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from reviewbot.review.prompts import Renderer, placeholders, task_text

Task = Literal["critique", "revise", "summarise"]
TASKS: tuple[str, ...] = ("critique", "revise", "summarise")


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

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ExampleError(f"unknown task {self.task!r} (expected one of {', '.join(TASKS)})")
        needed = set(placeholders(task_text(self.task)))
        missing = sorted(needed - set(self.fields))
        if missing:
            raise ExampleError(f"{self.task} example is missing field(s) {', '.join(missing)}")
        if not self.target.strip():
            raise ExampleError(f"{self.task} example has an empty target")

    def prompt(self, renderer: Renderer) -> str:
        """The full prompt text, exactly as a worker renders it for this task."""
        return renderer.task(self.task, **self.fields)

    @property
    def key(self) -> str:
        """A content hash (task, fields, target): equal examples share it (dedupe)."""
        data = json.dumps([self.task, self.fields, self.target], sort_keys=True)
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
            )
        except (KeyError, AttributeError, TypeError) as e:
            raise ExampleError(f"not an example record: {e}") from None


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
