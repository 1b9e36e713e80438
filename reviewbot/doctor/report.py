"""A doctor's findings: one line per check, ✓ or ✗, with the fix for a ✗ (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

OK = "✓"
FAILED = "✗"


@dataclass(frozen=True)
class Check:
    """One check: its name, whether it passed, what was found, and how to fix a failure."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def render(checks: Sequence[Check]) -> str:
    """The report: ``✓ name: detail`` per check, a failed one followed by ``  fix: ...``,
    then a count."""
    lines = []
    for c in checks:
        lines.append(f"{OK if c.ok else FAILED} {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"    fix: {c.fix}")
    failed = sum(not c.ok for c in checks)
    lines.append(
        f"{len(checks) - failed} of {len(checks)} checks passed"
        + (f"; {failed} failed" if failed else "")
    )
    return "\n".join(lines)


def healthy(checks: Sequence[Check]) -> bool:
    return all(c.ok for c in checks)
