"""The acceptance figures of reviewbot's posted findings (pure: ``reviewbot stats``).

:func:`acceptance_stats` counts labelled findings — posted, accepted, rejected, unknown —
overall and by category, path, adapter, confidence bucket and ISO week, and which
evidence signal decided each label; :func:`stats_json` and :func:`stats_table` render
the result. The acceptance rate is ``accepted / (accepted + rejected)``: findings still
``unknown`` are not in its denominator (``decided_share`` says how many were decided).
"""

from __future__ import annotations

import bisect
import fnmatch
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from reviewbot.learning.records import LabelledFinding, PostedFinding
from reviewbot.settings.defaults import CONFIDENCE_BUCKETS, OTHER_CATEGORY

#: The breakdowns of :class:`Stats`, in the order they are rendered.
BREAKDOWNS: tuple[str, ...] = ("category", "path", "adapter", "confidence", "week")
#: The path key of a finding no glob matched.
UNMATCHED_PATH = "(other)"
#: The adapter key of findings the base model (no adapter) made.
BASE_MODEL = "(base model)"
#: The confidence key of findings without a confidence score.
NOT_SCORED = "not scored"
#: The signal key of a decided label that carries no evidence.
NO_EVIDENCE = "(no evidence)"
#: Places rates are rounded to in :func:`stats_json`.
RATE_PLACES = 4


@dataclass(frozen=True)
class Row:
    """The counts of one group of findings (``key``: the group, e.g. a category)."""

    key: str
    posted: int = 0
    accepted: int = 0
    rejected: int = 0
    unknown: int = 0

    @property
    def decided(self) -> int:
        """Findings with a decided label (accepted or rejected)."""
        return self.accepted + self.rejected

    @property
    def rate(self) -> float | None:
        """Acceptance: accepted / decided; unknowns are not in the denominator.
        None when nothing is decided."""
        return self.accepted / self.decided if self.decided else None

    @property
    def decided_share(self) -> float | None:
        """decided / posted (None when nothing was posted)."""
        return self.decided / self.posted if self.posted else None


@dataclass(frozen=True)
class Stats:
    """The acceptance figures of ``repo`` (None: all repositories) since ``since``
    (None: all time): ``overall``, one list of rows per :data:`BREAKDOWNS` name, and
    ``by_signal``, how many labels each evidence signal decided (most first)."""

    repo: str | None
    since: date | None
    overall: Row
    breakdowns: dict[str, list[Row]]
    by_signal: dict[str, int]


def confidence_bucket(confidence: float | None) -> str:
    """The :data:`~reviewbot.settings.defaults.CONFIDENCE_BUCKETS` label of a score:
    ``0.50–0.70`` (lower bound included), ``≥ 0.90`` for the last, ``not scored`` for
    None or NaN. Scores below the first bound count in the first bucket."""
    if confidence is None or math.isnan(confidence):
        return NOT_SCORED
    i = max(bisect.bisect_right(CONFIDENCE_BUCKETS, confidence) - 1, 0)
    low = CONFIDENCE_BUCKETS[i]
    if i == len(CONFIDENCE_BUCKETS) - 1:
        return f"≥ {low:.2f}"
    return f"{low:.2f}–{CONFIDENCE_BUCKETS[i + 1]:.2f}"


def path_key(path: str, globs: Sequence[str] = ()) -> str:
    """The group of a path: the first of ``globs`` it matches (:func:`fnmatch.fnmatch`,
    in order; none: ``(other)``); with no globs, its top-level directory as ``dir/**``,
    or ``*`` for a file at the repository root."""
    if globs:
        return next((g for g in globs if fnmatch.fnmatch(path, g)), UNMATCHED_PATH)
    top, sep, _ = path.lstrip("/").partition("/")
    return f"{top}/**" if sep else "*"


def iso_week(when: datetime) -> str:
    """The ISO week of a moment, e.g. ``2026-W49`` (aware times are taken in UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _week_order(key: str) -> tuple[int, int]:
    year, _, week = key.partition("-W")
    return int(year), int(week)


#: How each breakdown groups a finding (globs: the path globs).
_KEYS: dict[str, Callable[[PostedFinding, Sequence[str]], str]] = {
    "category": lambda f, _: f.category or OTHER_CATEGORY,
    "path": lambda f, globs: path_key(f.path, globs),
    "adapter": lambda f, _: f.adapter or BASE_MODEL,
    "confidence": lambda f, _: confidence_bucket(f.confidence),
    "week": lambda f, _: iso_week(f.posted_at),
}


def _row(key: str, items: Iterable[LabelledFinding]) -> Row:
    labels = Counter(i.outcome.label for i in items)
    return Row(
        key=key,
        posted=labels.total(),
        accepted=labels["accepted"],
        rejected=labels["rejected"],
        unknown=labels["unknown"],
    )


def _breakdown(name: str, items: Sequence[LabelledFinding], globs: Sequence[str]) -> list[Row]:
    groups: dict[str, list[LabelledFinding]] = {}
    for item in items:
        groups.setdefault(_KEYS[name](item.finding, globs), []).append(item)
    rows = [_row(key, group) for key, group in groups.items()]
    if name == "week":
        return sorted(rows, key=lambda r: _week_order(r.key))
    return sorted(rows, key=lambda r: (-r.posted, r.key))


def acceptance_stats(
    items: Sequence[LabelledFinding],
    globs: Sequence[str] = (),
    *,
    repo: str | None = None,
    since: date | None = None,
) -> Stats:
    """The acceptance figures of ``items``, overall and by category, path (``globs``:
    see :func:`path_key`), adapter, confidence bucket and week. ``repo`` and ``since``
    describe the selection the caller made (not filtered here); ``repo`` defaults to
    the items' one repository, if they share one. Rates leave ``unknown`` findings out
    of the denominator (see :attr:`Row.rate`, :attr:`Row.decided_share`)."""
    if repo is None:
        repos = {i.finding.repo for i in items}
        repo = repos.pop() if len(repos) == 1 else None
    signals = Counter(
        i.outcome.evidence[0].signal if i.outcome.evidence else NO_EVIDENCE
        for i in items
        if i.outcome.label in ("accepted", "rejected")
    )
    return Stats(
        repo=repo,
        since=since,
        overall=_row("overall", items),
        breakdowns={name: _breakdown(name, items, globs) for name in BREAKDOWNS},
        by_signal=dict(sorted(signals.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, RATE_PLACES)


def row_json(row: Row) -> dict[str, Any]:
    """A row as JSON: its counts, ``decided``, and ``rate`` / ``decided_share``
    rounded to 4 places (null when undefined)."""
    return {
        "key": row.key,
        "posted": row.posted,
        "accepted": row.accepted,
        "rejected": row.rejected,
        "unknown": row.unknown,
        "decided": row.decided,
        "rate": _rounded(row.rate),
        "decided_share": _rounded(row.decided_share),
    }


def stats_json(stats: Stats) -> dict[str, Any]:
    """The figures as JSON (``reviewbot stats --json``): always the same keys, every
    breakdown present (an empty list when nothing was posted)."""
    return {
        "repo": stats.repo,
        "since": stats.since.isoformat() if stats.since is not None else None,
        "overall": row_json(stats.overall),
        "breakdowns": {
            name: [row_json(r) for r in rows] for name, rows in stats.breakdowns.items()
        },
        "by_signal": dict(stats.by_signal),
    }


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f} %"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table padded to read as plain text (first column left, rest right)."""
    cells = [[_cell(c) for c in header], *[[_cell(c) for c in line] for line in lines]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(r: Sequence[str]) -> str:
        rest = zip(r[1:], widths[1:], strict=True)
        parts = [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in rest)]
        return "| " + " | ".join(parts) + " |"

    rule = ["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]
    return [fmt(cells[0]), "| " + " | ".join(rule) + " |", *(fmt(r) for r in cells[1:])]


def stats_headline(stats: Stats) -> str:
    """One line: what was posted and decided, and the acceptance of the decided."""
    scope = stats.repo or "all repositories"
    if stats.since is not None:
        scope += f" since {stats.since.isoformat()}"
    o = stats.overall
    if not o.posted:
        return f"{scope}: no findings recorded."
    rate = f"acceptance {_percent(o.rate)} of decided" if o.decided else "nothing decided yet"
    return (
        f"{scope}: {_plural(o.posted, 'comment')} posted, {o.accepted} accepted, "
        f"{o.rejected} rejected, {o.unknown} unknown — {rate} ({o.decided} of {o.posted} decided)"
    )


def stats_table(stats: Stats) -> str:
    """The figures as text: the headline, then a Markdown table per breakdown (key,
    posted, accepted, rejected, unknown, acceptance) and one of deciding signals."""
    out = [stats_headline(stats)]
    if not stats.overall.posted:
        return out[0] + "\n"
    columns = ("posted", "accepted", "rejected", "unknown", "acceptance")
    for name, rows in stats.breakdowns.items():
        lines = [
            [r.key, *map(str, (r.posted, r.accepted, r.rejected, r.unknown)), _percent(r.rate)]
            for r in rows
        ]
        out += ["", f"By {name}:", "", *_table((name, *columns), lines)]
    if stats.by_signal:
        lines = [[signal, str(n)] for signal, n in stats.by_signal.items()]
        out += ["", "Decided by:", "", *_table(("signal", "labels"), lines)]
    return "\n".join(out) + "\n"
