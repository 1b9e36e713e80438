"""Render a Review (or a dry-run Plan) as Markdown or JSON for the CLI.

Paths are code spans and skip reasons and hunk headers (text from the diff)
are made inert (:mod:`reviewbot.review.markdown`), as in the posted review; the
comment bodies and the summary come inert from the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from reviewbot.review.findings import Review
from reviewbot.review.markdown import code_span, inert
from reviewbot.review.units import Plan, Skipped


def _where(path: str, start: int | None, line: int, side: str) -> str:
    span = f"line {line}" if start is None else f"lines {start}–{line}"
    old = " (old side)" if side == "LEFT" else ""
    return f"{code_span(path)} {span}{old}"


def review_markdown(review: Review) -> str:
    """A human-readable review: its counts (:class:`~reviewbot.review.findings.Statistics`),
    summary, comments, and what was left out."""
    stats = review.statistics
    out = ["# reviewbot review", ""]
    out.append(
        " ".join(
            [
                f"Reviewed {stats.units} unit(s): {stats.findings} finding(s), "
                f"{stats.comments} comment(s).",
                *stats.sentences(),
            ]
        )
    )
    if review.summary:
        out += ["", "## Summary", "", review.summary]
    for c in review.comments:
        out += ["", f"## {_where(c.path, c.start_line, c.line, c.side)}", "", c.body]
    if not review.comments:
        out += ["", "No actionable findings."]
    out += _skipped_markdown(review.skipped)
    return "\n".join(out) + "\n"


def plan_markdown(plan: Plan) -> str:
    """A dry-run listing of the review units the diff yields."""
    out = ["# reviewbot plan (dry run)", "", f"{len(plan.units)} review unit(s)."]
    for u in plan.units:
        side = " (old side)" if u.side == "LEFT" else ""
        where = f"{code_span(u.path)} lines {u.start_line}–{u.end_line}{side}"
        out.append(f"- {where}  {inert(u.hunk_header)}")
    out += _skipped_markdown(plan.skipped)
    return "\n".join(out) + "\n"


def _skipped_markdown(skipped: Sequence[Skipped]) -> list[str]:
    if not skipped:
        return []
    rows = [f"- {code_span(s.path)}: {inert(s.reason)}" for s in skipped]
    return ["", "## Not reviewed", "", *rows]


def review_json(review: Review) -> str:
    """The review as JSON: units, comments, summary, skipped, statistics."""
    return json.dumps(review.to_json(), indent=2, ensure_ascii=False) + "\n"


def plan_json(plan: Plan) -> str:
    """Dry-run JSON: the same shape as a review, with no comments and no summary."""
    return review_json(Review(plan.units, (), None, plan.skipped))
