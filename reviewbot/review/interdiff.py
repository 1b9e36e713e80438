"""Incremental review: keep only the units that changed since the last reviewed head."""

from __future__ import annotations

from dataclasses import replace

from reviewbot.review.diffplan import added_lines
from reviewbot.review.units import Plan


def restrict_to_interdiff(plan: Plan, interdiff: str) -> tuple[Plan, int]:
    """The plan limited to units with lines the ``interdiff`` (last reviewed head → head)
    added; and how many units were unchanged (already reviewed at the earlier head).

    Raises :class:`~reviewbot.review.units.DiffError` for a malformed interdiff.
    """
    changed = added_lines(interdiff)
    kept = tuple(
        u
        for u in plan.units
        if u.side == "RIGHT" and changed.get(u.path, set()).intersection(u.added_lines)
    )
    return replace(plan, units=kept), len(plan.units) - len(kept)
