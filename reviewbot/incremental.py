"""Incremental review: keep only the units that changed since the last reviewed head."""

from __future__ import annotations

from dataclasses import replace

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from reviewbot.units import DiffError, Plan


def added_lines(diff_text: str) -> dict[str, set[int]]:
    """New-side line numbers added by a diff, per target path."""
    try:
        patch = PatchSet(diff_text)
    except UnidiffParseError as e:
        raise DiffError(str(e)) from e
    changed: dict[str, set[int]] = {}
    for f in patch:
        if f.is_removed_file or f.is_binary_file:
            continue
        path = f.target_file[2:] if f.target_file.startswith("b/") else f.target_file
        lines = changed.setdefault(path, set())
        for hunk in f:
            lines.update(line.target_line_no for line in hunk if line.is_added)
    return changed


def restrict_to_changes(plan: Plan, changed: dict[str, set[int]]) -> tuple[Plan, int]:
    """The plan limited to units with lines added since the last review.

    Returns the restricted plan and how many units were unchanged (already
    reviewed at the earlier head).
    """
    kept = tuple(
        u
        for u in plan.units
        if u.side == "RIGHT" and changed.get(u.path, set()).intersection(u.added_lines)
    )
    return replace(plan, units=kept), len(plan.units) - len(kept)
