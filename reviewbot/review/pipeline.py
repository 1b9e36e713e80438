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

from reviewbot.review.confidence import Score, rate_findings
from reviewbot.review.findings import (
    NEAR_DUPLICATE,
    Comment,
    Dropped,
    Finding,
    Review,
    anchored_code,
    fingerprint,
)
from reviewbot.review.markdown import code_block, code_span, inert
from reviewbot.review.noise import clean_completion, group_duplicates, noise_reason
from reviewbot.review.prompts import Renderer, unit_instructions, unit_original
from reviewbot.review.suggestions import (
    SUGGESTION_UNPARSABLE,
    check_suggestion,
    extract_code,
    map_revision,
    postable,
    revision_problem,
    suggestion_block,
    without_code_copies,
)
from reviewbot.review.units import Plan, ReviewUnit
from reviewbot.settings.defaults import ReviewOptions

log = logging.getLogger(__name__)

Generate = Callable[[list[str]], list[str]]
#: The text of a file at the reviewed head (by path), or None when it cannot be read.
ReadFile = Callable[[str], str | None]


def _generate(generate: Generate, prompts: list[str]) -> list[str]:
    if not prompts:
        return []
    out = generate(prompts)
    if len(out) != len(prompts):
        raise RuntimeError(f"generate returned {len(out)} completions for {len(prompts)} prompts")
    return out


def copying(generate: Generate) -> Generate:
    """What generates revisions (completions that mostly copy their prompt's code):
    the model's ``generate_copying`` (prompt lookup, :class:`~reviewbot.model.generation.Engine`)
    when ``generate`` is the bound ``generate`` of a model that has one; else ``generate``."""
    owner = getattr(generate, "__self__", None)
    method = getattr(owner, "generate_copying", None)
    if getattr(generate, "__name__", None) == "generate" and callable(method):
        return method
    return generate


def _guidelines(unit: ReviewUnit, options: ReviewOptions) -> str:
    """The repository's guidelines for ``unit``: extra_instructions + matching path_instructions."""
    return unit_instructions(unit.path, options.extra_instructions, options.path_instructions)


def critique_prompts(
    units: Sequence[ReviewUnit], renderer: Renderer, options: ReviewOptions = ReviewOptions()
) -> list[str]:
    """One critique prompt per unit: ORIGINAL in the marked view when ``changed_lines``
    is on (:func:`~reviewbot.review.prompts.unit_original`), the unit's guidelines and
    the response language."""
    return [
        renderer.task(
            "critique",
            _guidelines(u, options),
            options.response_language,
            ORIGINAL=unit_original(u, marked=options.changed_lines),
        )
        for u in units
    ]


def revise_prompts(
    findings: Sequence[Finding], renderer: Renderer, options: ReviewOptions = ReviewOptions()
) -> list[str]:
    """One revise prompt per finding: ORIGINAL in the plain view, the critique as COMMENT."""
    return [
        renderer.task(
            "revise",
            _guidelines(f.unit, options),
            options.response_language,
            ORIGINAL=unit_original(f.unit),
            CRITIQUE=f.critique,
        )
        for f in findings
    ]


def summarise_prompts(
    findings: Sequence[Finding], renderer: Renderer, options: ReviewOptions = ReviewOptions()
) -> list[str]:
    """One summarise prompt per revised finding: ORIGINAL in the plain view, the revision."""
    return [
        renderer.task(
            "summarise",
            language=options.response_language,
            ORIGINAL=unit_original(f.unit),
            REVISED=f.revision or "",
        )
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


def attach_revision(
    finding: Finding,
    completion: str,
    options: ReviewOptions,
    read_file: ReadFile | None = None,
) -> Finding:
    """Extract the revised code and map it to a suggestion when it fits the unit.

    A revision that is empty, prose or the original again is dropped
    (``revision_dropped`` says why, :func:`~reviewbot.review.suggestions.revision_problem`).
    When suggestions are posted (``options.revise``), a suggestion is parsed with the
    file at the head (``read_file``; without it, with the unit's own lines): one that
    introduces a syntax error is no suggestion: its revision is shown as plain code
    marked "does not parse", or dropped (``options.unparsable``).
    """
    revised = extract_code(completion)
    problem = revision_problem(finding.unit.original, revised, finding.critique)
    if problem is not None:
        log.debug("%s:%d: %s", finding.unit.path, finding.unit.start_line, problem)
        return replace(finding, revision_dropped=problem)
    suggestion = map_revision(finding.unit, revised, options.min_suggestion_similarity)
    if suggestion is None or not options.revise:
        return replace(finding, revision=revised, suggestion=suggestion)
    text = read_file(finding.unit.path) if read_file is not None else None
    check = check_suggestion(finding.unit, suggestion, text)
    if check.parses:
        return replace(finding, revision=revised, suggestion=suggestion, syntax=check)
    log.info(
        "%s:%d: the suggestion does not parse (checked against the %s)",
        finding.unit.path,
        suggestion.start,
        check.against,
    )
    dropped = SUGGESTION_UNPARSABLE if options.unparsable == "drop" else None
    return replace(finding, revision=revised, syntax=check, revision_dropped=dropped)


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
#: A revision whose suggestion introduces a syntax error, by what it was parsed with.
UNPARSABLE = {
    "file": "Proposed revision (it does not parse: applied to the file at the head, it "
    "introduces a syntax error, so it is shown as plain code, not as a suggestion):",
    "hunk": "Proposed revision (it does not parse: applied to the changed lines, it "
    "introduces a syntax error, so it is shown as plain code, not as a suggestion):",
}


def to_comment(finding: Finding, revise: bool) -> Comment:
    """Anchor a finding: on the suggestion's lines, else on the unit's added lines.

    The body is built from parts: the critique made inert, then the
    apply-checked suggestion block, or the revision as a plain code block,
    then the "Also applies to" paths as code spans.
    """
    unit = finding.unit
    critique = finding.critique
    if revise and finding.revision:  # the revision carries the code: the critique's copy goes
        critique = without_code_copies(critique, (unit.original, finding.revision))
    parts = [inert(critique)] if critique.strip() else []
    mapped = finding.suggestion if revise else None
    suggestion = mapped if mapped is not None and postable(mapped) else None
    if suggestion is not None:
        start, end = suggestion.start, suggestion.end
        parts.append(suggestion_block(suggestion))
    else:
        lines = unit.added_lines or (unit.start_line, unit.end_line)
        start, end = min(lines), max(lines)
        if revise and finding.revision and finding.revision_dropped is None:
            syntax = finding.syntax
            if syntax is not None and not syntax.parses:
                label = UNPARSABLE[syntax.against]
            else:
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
        fingerprint=fingerprint(
            unit.path, finding.critique, suggestion_text, anchored_code(unit, start, end)
        ),
        confidence=finding.confidence,
        critique=finding.critique,
        unit=unit,
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
    plan: Plan,
    generate: Generate,
    renderer: Renderer,
    options: ReviewOptions = ReviewOptions(),
    *,
    score: Score | None = None,
    read_file: ReadFile | None = None,
    revise_with: Generate | None = None,
) -> Review:
    """Critique every unit; rate each finding's confidence with ``score`` (those below
    ``options.min_confidence`` are counted, not posted); optionally revise and
    summarise; build the Review. Without ``score``, findings carry no confidence
    (only a threshold of 0 allows that). ``read_file`` gives the text of a file at the
    head, to parse suggestions with (:func:`attach_revision`; each file is read at most
    once, only when one of its findings has a suggestion); without it, suggestions are
    parsed with their unit's lines only. ``revise_with`` generates the revisions (default:
    :func:`copying` of ``generate``)."""
    units = list(plan.units)
    critiques = _generate(generate, critique_prompts(units, renderer, options))
    findings, dropped = filter_critiques(units, critiques, options)
    findings, unsure = rate_findings(
        findings,
        critique_prompts([f.unit for f in findings], renderer, options),
        score,
        options.min_confidence,
    )
    dropped += unsure
    log.info(
        "%d units, %d findings, %d dropped by noise control, %d below confidence %.2f",
        len(units),
        len(findings),
        len(dropped) - len(unsure),
        len(unsure),
        options.min_confidence,
    )
    if (options.revise or options.summary) and findings:
        revise = revise_with or copying(generate)
        revisions = _generate(revise, revise_prompts(findings, renderer, options))
        read = _read_once(read_file) if read_file is not None else None
        findings = [
            attach_revision(f, r, options, read) for f, r in zip(findings, revisions, strict=True)
        ]
    findings = merge_duplicates(findings, options.noise.duplicate_ratio)
    dropped += not_posted(findings)
    summary = None
    if options.summary:
        revised = [f for f in findings if f.revision and f.revision_dropped is None]
        summary = summarise(
            revised, _generate(generate, summarise_prompts(revised, renderer, options)), options
        )
    comments = tuple(to_comment(f, options.revise) for f in findings)
    return Review(
        units=tuple(units),
        comments=comments,
        summary=summary,
        skipped=plan.skipped,
        dropped=tuple(dropped),
        checks=tuple(f.syntax for f in findings if f.syntax is not None),
    )


def _read_once(read_file: ReadFile) -> ReadFile:
    """``read_file`` that reads each path once."""
    texts: dict[str, str | None] = {}

    def read(path: str) -> str | None:
        if path not in texts:
            texts[path] = read_file(path)
        return texts[path]

    return read


def not_posted(findings: Sequence[Finding]) -> list[Dropped]:
    """What the statistics count of ``findings`` beyond noise control: the findings
    merged into another (near-duplicates), and the revisions dropped."""
    out = [Dropped(u.path, u.start_line, NEAR_DUPLICATE) for f in findings for u in f.also]
    out += [
        Dropped(f.unit.path, f.unit.start_line, f.revision_dropped, "revision")
        for f in findings
        if f.revision_dropped is not None
    ]
    return out
