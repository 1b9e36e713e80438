"""The review pipeline: units → prompts → completions → findings → Review.

Pure given a ``generate(prompts) -> completions`` function; the model engine,
the CLI and the workers supply that function. Comment bodies and the summary
are built from parts: the model's text made inert
(:func:`reviewbot.review.markdown.inert`), paths as code spans, and the one
suggestion block the pipeline built from an apply-checked suggestion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from reviewbot.review.findings import Comment, Dropped, Finding, Review, fingerprint
from reviewbot.review.markdown import code_block, code_span, inert
from reviewbot.review.noise import clean_completion, group_duplicates, noise_reason
from reviewbot.review.prompts import Renderer
from reviewbot.review.suggestions import extract_code, map_revision, postable, suggestion_block
from reviewbot.review.units import Plan, ReviewUnit
from reviewbot.settings.defaults import ReviewOptions

log = logging.getLogger(__name__)

Generate = Callable[[list[str]], list[str]]


def _generate(generate: Generate, prompts: list[str]) -> list[str]:
    if not prompts:
        return []
    out = generate(prompts)
    if len(out) != len(prompts):
        raise RuntimeError(f"generate returned {len(out)} completions for {len(prompts)} prompts")
    return out


def critique_prompts(
    units: Sequence[ReviewUnit], renderer: Renderer, instructions: str = ""
) -> list[str]:
    return [renderer.task("critique", instructions, ORIGINAL=u.original) for u in units]


def revise_prompts(
    findings: Sequence[Finding], renderer: Renderer, instructions: str = ""
) -> list[str]:
    return [
        renderer.task("revise", instructions, ORIGINAL=f.unit.original, CRITIQUE=f.critique)
        for f in findings
    ]


def summarise_prompts(findings: Sequence[Finding], renderer: Renderer) -> list[str]:
    return [
        renderer.task("summarise", ORIGINAL=f.unit.original, REVISED=f.revision or "")
        for f in findings
    ]


def filter_critiques(
    units: Sequence[ReviewUnit], completions: Sequence[str], options: ReviewOptions
) -> tuple[list[Finding], list[Dropped]]:
    """Clean each critique; keep findings, record what noise control dropped."""
    findings: list[Finding] = []
    dropped: list[Dropped] = []
    for unit, raw in zip(units, completions, strict=True):
        text = clean_completion(raw, options.noise.max_critique_chars)
        reason = noise_reason(text, unit.original, options.noise)
        if reason:
            dropped.append(Dropped(unit.path, unit.start_line, reason))
            log.debug("dropped critique on %s:%d (%s)", unit.path, unit.start_line, reason)
        else:
            findings.append(Finding(unit, text))
    return findings, dropped


def attach_revision(finding: Finding, completion: str, options: ReviewOptions) -> Finding:
    """Extract the revised code and map it to a suggestion when it fits the unit."""
    revised = extract_code(completion)
    if not revised.strip():
        return finding
    suggestion = map_revision(finding.unit, revised, options.min_suggestion_similarity)
    return replace(finding, revision=revised, suggestion=suggestion)


def merge_duplicates(findings: Sequence[Finding], ratio: float) -> list[Finding]:
    """Merge near-duplicate critiques into the first one (noting where else it applies)."""
    groups = group_duplicates([f.critique for f in findings], ratio)
    merged = []
    for group in groups:
        head = findings[group[0]]
        others = tuple(findings[i].unit for i in group[1:])
        merged.append(replace(head, also=head.also + others) if others else head)
    return merged


def _range(start: int, end: int) -> str:
    return f"line {start}" if start == end else f"lines {start}–{end}"


#: How a revision that is no committable suggestion is introduced in a comment.
PROPOSED = "Proposed revision (it does not map onto the changed lines):"
PROPOSED_UNPOSTABLE = (
    "Proposed revision (shown as plain code: it holds an HTML comment opener, "
    "which reviewbot never offers as a committable suggestion):"
)


def to_comment(finding: Finding, revise: bool) -> Comment:
    """Anchor a finding: on the suggestion's lines, else on the unit's added lines.

    The body is built from parts: the critique made inert, then the
    apply-checked suggestion block, or the revision as a plain code block,
    then the "Also applies to" paths as code spans.
    """
    unit = finding.unit
    parts = [inert(finding.critique)]
    mapped = finding.suggestion if revise else None
    suggestion = mapped if mapped is not None and postable(mapped) else None
    if suggestion is not None:
        start, end = suggestion.start, suggestion.end
        parts.append(suggestion_block(suggestion))
    else:
        lines = unit.added_lines or (unit.start_line, unit.end_line)
        start, end = min(lines), max(lines)
        if revise and finding.revision:
            label = PROPOSED if mapped is None else PROPOSED_UNPOSTABLE
            parts += [label, code_block(finding.revision)]
    if finding.also:
        where = ", ".join(
            f"{code_span(u.path)} {_range(u.start_line, u.end_line)}" for u in finding.also
        )
        parts.append(f"Also applies to: {where}.")
    body = "\n\n".join(parts)
    suggestion_text = suggestion.text if suggestion is not None else None
    return Comment(
        path=unit.path,
        line=end,
        side=unit.side,
        start_line=start if start != end else None,
        body=body,
        suggestion=suggestion_text,
        fingerprint=fingerprint(unit.path, finding.critique, suggestion_text),
    )


def summarise(
    findings: Sequence[Finding], completions: Sequence[str], options: ReviewOptions
) -> str | None:
    """One summary line per revised unit, noise-controlled."""
    parts = []
    for f, raw in zip(findings, completions, strict=True):
        text = clean_completion(raw, options.noise.max_critique_chars)
        if noise_reason(text, f.unit.original, options.noise) is None:
            where = f"{code_span(f.unit.path)} {_range(f.unit.start_line, f.unit.end_line)}"
            parts.append(f"- {where}: {inert(text)}")
    return "\n".join(parts) if parts else None


def review_plan(
    plan: Plan, generate: Generate, renderer: Renderer, options: ReviewOptions = ReviewOptions()
) -> Review:
    """Critique every unit; optionally revise and summarise; build the Review."""
    units = list(plan.units)
    critiques = _generate(generate, critique_prompts(units, renderer, options.extra_instructions))
    findings, dropped = filter_critiques(units, critiques, options)
    log.info(
        "%d units, %d findings, %d dropped by noise control",
        len(units),
        len(findings),
        len(dropped),
    )
    if (options.revise or options.summary) and findings:
        revisions = _generate(
            generate, revise_prompts(findings, renderer, options.extra_instructions)
        )
        findings = [
            attach_revision(f, r, options) for f, r in zip(findings, revisions, strict=True)
        ]
    findings = merge_duplicates(findings, options.noise.duplicate_ratio)
    summary = None
    if options.summary:
        revised = [f for f in findings if f.revision]
        summary = summarise(
            revised, _generate(generate, summarise_prompts(revised, renderer)), options
        )
    comments = tuple(to_comment(f, options.revise) for f in findings)
    return Review(
        units=tuple(units),
        comments=comments,
        summary=summary,
        skipped=plan.skipped,
        dropped=tuple(dropped),
    )
