"""What reviewbot remembers of each finding it posted, and what became of it (pure data).

A :class:`PostedFinding` is written when a review is posted (the worker records it);
an :class:`OutcomeLabel` (``accepted`` / ``rejected`` / ``unknown``) with its
:class:`Evidence` is computed later from GitHub (:mod:`reviewbot.learning.labels`).
:func:`export_record` is the one shape of a labelled finding in a training file
(``reviewbot finetune harvest --outcomes``); :func:`record_example_fields` turns such a
record back into what the prompt showed the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reviewbot.review.findings import Comment, anchored_code
from reviewbot.review.suggestions import normalise_code
from reviewbot.review.units import ReviewUnit
from reviewbot.settings.defaults import (
    FINDING_CATEGORIES,
    HUMAN_LABEL,
    OTHER_CATEGORY,
    OUTCOME_LABELS,
)


class RecordError(ValueError):
    """A training record that is not a labelled finding (the message says why)."""


class StoreError(Exception):
    """The findings database failed (unreachable, a failed write); the message says how."""


def code_hash(code: str) -> str:
    """A hash of whitespace-normalised code: the same code wherever its lines moved."""
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()[:16]


def category_of(critique: str) -> str:
    """A finding's category from its critique's words (first keyword match in
    :data:`~reviewbot.settings.defaults.FINDING_CATEGORIES`, else ``other``)."""
    text = critique.lower()
    for name, keywords in FINDING_CATEGORIES:
        if any(k in text for k in keywords):
            return name
    return OTHER_CATEGORY


@dataclass(frozen=True)
class PostedFinding:
    """One finding reviewbot posted on a pull request, as the worker records it.

    ``start_line``..``line`` on ``side`` is where it was anchored at ``head_sha``
    (``start_line`` None: one line). ``original`` is the unit the model saw,
    starting at ``unit_start_line``, with ``changed`` the lines the change made;
    ``code_hash`` hashes the anchored lines (:func:`code_hash`). ``inline``: posted
    as an inline comment (False: listed in the review body).
    """

    repo: str
    pr_number: int
    head_sha: str
    path: str
    line: int
    fingerprint: str
    critique: str
    original: str
    start_line: int | None = None
    side: str = "RIGHT"
    unit_start_line: int = 1
    changed: tuple[int, ...] = ()
    suggestion: str | None = None
    code_hash: str = ""
    confidence: float | None = None
    category: str = OTHER_CATEGORY
    model: str = ""
    adapter: str | None = None
    prompt_format: str = ""
    installation_id: int | None = None
    review_id: int | None = None
    inline: bool = True
    posted_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def first_line(self) -> int:
        return self.start_line if self.start_line is not None else self.line


def posted_findings(
    comments: Sequence[Comment],
    *,
    repo: str,
    pr_number: int,
    head_sha: str,
    inline: frozenset[str],
    model: str,
    adapter: str | None,
    prompt_format: str,
    installation_id: int | None,
    review_id: int | None,
    posted_at: datetime | None = None,
) -> list[PostedFinding]:
    """The records of a posted review's findings (``inline``: the fingerprints posted
    inline; the others went into the review body). Comments without their unit
    (built outside the pipeline) record an empty ``original``."""
    when = posted_at or datetime.now(UTC)
    out = []
    for c in comments:
        unit: ReviewUnit | None = c.unit
        first = c.start_line if c.start_line is not None else c.line
        code = anchored_code(unit, first, c.line) if unit is not None else ""
        out.append(
            PostedFinding(
                repo=repo,
                pr_number=pr_number,
                head_sha=head_sha,
                path=c.path,
                line=c.line,
                start_line=c.start_line,
                side=c.side,
                fingerprint=c.fingerprint,
                critique=c.critique or c.body,
                original=unit.original if unit is not None else "",
                unit_start_line=unit.start_line if unit is not None else first,
                changed=tuple(unit.added_lines) if unit is not None else (),
                suggestion=c.suggestion,
                code_hash=code_hash(code) if code else "",
                confidence=c.confidence,
                category=category_of(c.critique or c.body),
                model=model,
                adapter=adapter,
                prompt_format=prompt_format,
                installation_id=installation_id,
                review_id=review_id,
                inline=c.fingerprint in inline,
                posted_at=when,
            )
        )
    return out


@dataclass(frozen=True)
class Evidence:
    """One signal behind a label: what (``signal``), by whom (a login), at which commit."""

    signal: str
    by: str | None = None
    commit: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"signal": self.signal, "by": self.by, "commit": self.commit, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(
            signal=str(data.get("signal", "")),
            by=data.get("by"),
            commit=data.get("commit"),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True)
class OutcomeLabel:
    """What became of a posted finding: ``accepted``, ``rejected`` or ``unknown``,
    with the evidence that decided it (empty for ``unknown``: no signal yet)."""

    label: str
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        if self.label not in OUTCOME_LABELS:
            raise ValueError(f"unknown outcome label {self.label!r}")

    def evidence_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.evidence]


UNKNOWN = OutcomeLabel("unknown")


@dataclass(frozen=True)
class LabelledFinding:
    """A posted finding with its current label, as the store hands it out."""

    finding: PostedFinding
    outcome: OutcomeLabel = UNKNOWN
    comment_id: int | None = None
    """The inline comment that carries it on GitHub (found at the first refresh)."""
    refreshed_at: datetime | None = None


def export_record(item: LabelledFinding) -> dict[str, Any]:
    """One line of ``finetune harvest --outcomes``: a labelled finding for training."""
    f = item.finding
    return {
        "label": item.outcome.label,
        "evidence": item.outcome.evidence_json(),
        "fingerprint": f.fingerprint,
        "repo": f.repo,
        "pr": f.pr_number,
        "head_sha": f.head_sha,
        "path": f.path,
        "side": f.side,
        "start_line": f.start_line,
        "line": f.line,
        "unit_start_line": f.unit_start_line,
        "changed": list(f.changed),
        "original": f.original,
        "critique": f.critique,
        "suggestion": f.suggestion,
        "confidence": f.confidence,
        "category": f.category,
        "model": f.model,
        "adapter": f.adapter,
        "prompt_format": f.prompt_format,
        "posted_at": f.posted_at.isoformat(),
    }


#: The keys every exported record has (human comments' included).
RECORD_KEYS = ("label", "path", "original", "critique")


def check_record(data: Any) -> dict[str, Any]:
    """``data`` if it is a labelled-finding record (exported or human), else RecordError."""
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    missing = [k for k in RECORD_KEYS if k not in data]
    if missing:
        raise RecordError(f"missing key(s) {', '.join(missing)}")
    if data["label"] not in (*OUTCOME_LABELS, HUMAN_LABEL):
        raise RecordError(f"unknown label {data['label']!r}")
    for key in ("path", "original", "critique"):
        if not isinstance(data[key], str):
            raise RecordError(f"{key} is not a string")
    if not data["original"].strip() or not data["critique"].strip():
        raise RecordError("empty original or critique")
    return data


def record_context(data: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt context (an example's ``context``) of a record: path, where the unit
    starts, which lines the change made, and the side — what the model was shown."""
    ctx: dict[str, Any] = {"path": str(data["path"])}
    start = data.get("unit_start_line") or data.get("start_line") or data.get("line")
    if isinstance(start, int) and start >= 1:
        ctx["start_line"] = start
    changed = data.get("changed")
    if isinstance(changed, list) and all(isinstance(n, int) for n in changed):
        ctx["changed"] = list(changed)
    if data.get("side") == "LEFT":
        ctx["side"] = "LEFT"
    return ctx
