"""Evaluate a model (+ adapter) on held-out examples.

Reports the teacher-forced loss on the responses (prompt masked exactly as in
training, :mod:`finetune.encode`), CodeReviewer's BLEU-4 and ROUGE-L of generated
critiques and summaries, exact match of revisions, the share of revisions that
become a committable suggestion (:func:`reviewbot.review.suggestions.map_revision` plus
the apply-check), line anchoring of review-comment records (does the comment
reviewbot would post on that hunk cover the human reviewer's line?) and a
breakdown by provenance category.

The model is an :class:`reviewbot.model.generation.Engine` (loaded by ``load_engine``, as
in production); prompts come from its renderer. Scoring is pure
(:func:`score`); only :func:`response_losses` and :func:`generate_outputs` run
the model.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from finetune.examples import Example
from finetune.loss import example_losses
from finetune.metrics import codereviewer_bleu, covers, exact_match, mean_rouge_l, share
from reviewbot.review.findings import Finding
from reviewbot.review.noise import clean_completion, noise_reason
from reviewbot.review.pipeline import attach_revision, to_comment
from reviewbot.review.prompts import Renderer
from reviewbot.review.suggestions import extract_code, map_revision, suggestion_applies
from reviewbot.review.units import ReviewUnit
from reviewbot.settings.defaults import (
    EVAL_LOSS_BATCH_SIZE,
    EVAL_MAX_LENGTH,
    EVAL_MAX_NEW_TOKENS,
    EVAL_REVISE_MAX_NEW_TOKENS,
    ReviewOptions,
)

log = logging.getLogger(__name__)

#: ``generate(prompts, max_new_tokens) -> completions`` (the engine's, in practice).
Generate = Callable[[list[str], int], list[str]]
UNCATEGORISED = "(none)"


@dataclass(frozen=True)
class EvalSettings:
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS
    """Tokens generated per critique or summary."""
    revise_max_new_tokens: int = EVAL_REVISE_MAX_NEW_TOKENS
    max_length: int = EVAL_MAX_LENGTH
    """Longest example for the loss (tokens); the model's context caps it too."""
    loss_batch_size: int = EVAL_LOSS_BATCH_SIZE
    anchoring: bool = True
    """Run the critique → revise → comment pipeline on review-comment records."""
    options: ReviewOptions = field(default_factory=ReviewOptions)


# --------------------------------------------------------------------------- units


def unit_for(example: Example) -> ReviewUnit:
    """The review unit ``example`` was made from (its provenance), else a unit at line 1."""
    original = example.fields["ORIGINAL"]
    prov = example.provenance
    info = prov.get("unit") if isinstance(prov.get("unit"), dict) else None
    count = len(original.split("\n"))
    if info is not None and info.get("end_line", 0) - info.get("start_line", 0) + 1 == count:
        start, end = int(info["start_line"]), int(info["end_line"])
        added = tuple(int(n) for n in info.get("added_lines") or ())
    else:
        start, end, added = 1, count, ()
    return ReviewUnit(
        path=str(prov.get("path") or "file"),
        start_line=start,
        end_line=end,
        hunk_header="",
        original=original,
        added_lines=added,
    )


def anchor_target(example: Example) -> int | None:
    """The human's line (new side) when ``example`` can be scored on anchoring."""
    prov = example.provenance
    line = prov.get("line_number")
    if example.task != "critique" or prov.get("side") != "RIGHT" or not isinstance(line, int):
        return None
    unit = unit_for(example)
    return line if unit.start_line <= line <= unit.end_line else None


# --------------------------------------------------------------------------- model IO


@dataclass(frozen=True)
class Losses:
    """Per example: summed response-token loss and response-token count."""

    sums: tuple[float, ...]
    tokens: tuple[int, ...]


def response_losses(
    model: Any,
    tokenizer: Any,
    renderer: Renderer,
    examples: Sequence[Example],
    max_length: int,
    batch_size: int = EVAL_LOSS_BATCH_SIZE,
) -> Losses:
    """Teacher-forced cross-entropy on each example's response tokens (prompt masked)."""
    losses = example_losses(model, tokenizer, renderer, examples, max_length, batch_size)
    return Losses(tuple(t for t, _ in losses), tuple(n for _, n in losses))


@dataclass(frozen=True)
class Outputs:
    """What the model generated for the examples (empty where not asked)."""

    completions: tuple[str, ...]
    """Per example: the completion for its own task prompt."""
    anchored_revisions: dict[int, str]
    """Per anchoring critique example (index): the revise completion for its critique."""


def generate_outputs(
    examples: Sequence[Example], renderer: Renderer, generate: Generate, settings: EvalSettings
) -> Outputs:
    """Generate every example's response; revise once more for anchoring examples."""
    completions = [""] * len(examples)
    for task, budget in (
        ("critique", settings.max_new_tokens),
        ("summarise", settings.max_new_tokens),
        ("revise", settings.revise_max_new_tokens),
    ):
        idx = [i for i, ex in enumerate(examples) if ex.task == task]
        if idx:
            log.info("generating %d %s completion(s)", len(idx), task)
            out = generate([examples[i].prompt(renderer) for i in idx], budget)
            for i, text in zip(idx, out, strict=True):
                completions[i] = text
    anchored: dict[int, str] = {}
    if settings.anchoring:
        todo = []
        for i, ex in enumerate(examples):
            if anchor_target(ex) is None:
                continue
            critique = clean_completion(completions[i], settings.options.noise.max_critique_chars)
            if noise_reason(critique, ex.fields["ORIGINAL"], settings.options.noise) is None:
                todo.append((i, critique))
        if todo:
            log.info("generating %d revision(s) for line anchoring", len(todo))
            prompts = [
                renderer.task("revise", ORIGINAL=examples[i].original(marked=False), CRITIQUE=c)
                for i, c in todo
            ]
            out = generate(prompts, settings.revise_max_new_tokens)
            anchored = {i: text for (i, _), text in zip(todo, out, strict=True)}
    return Outputs(tuple(completions), anchored)


# --------------------------------------------------------------------------- scoring


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _loss_summary(losses: Losses, idx: Sequence[int]) -> dict[str, Any]:
    total = sum(losses.sums[i] for i in idx)
    tokens = sum(losses.tokens[i] for i in idx)
    mean = total / tokens if tokens else None
    return {
        "mean": _round(mean),
        "perplexity": _round(math.exp(mean)) if mean is not None and mean < 50 else None,
        "tokens": tokens,
    }


def _text_scores(examples: Sequence[Example], hyps: Sequence[str], idx: Sequence[int]) -> dict:
    refs = [examples[i].target for i in idx]
    got = [hyps[i] for i in idx]
    return {
        "n": len(idx),
        "bleu4": _round(codereviewer_bleu(refs, got), 2),
        "bleu4_with_stopwords": _round(codereviewer_bleu(refs, got, remove_stopwords=False), 2),
        "rouge_l": _round(mean_rouge_l(refs, got), 2),
    }


def suggestion_valid(unit: ReviewUnit, revised: str, min_similarity: float) -> bool:
    """Whether ``revised`` maps onto ``unit`` as a suggestion that passes the apply-check."""
    s = map_revision(unit, revised, min_similarity)
    return s is not None and suggestion_applies(unit, s, revised)


def _revise_scores(
    examples: Sequence[Example], revised: Sequence[str], idx: Sequence[int], similarity: float
) -> dict:
    exact = sum(exact_match(examples[i].target, revised[i]) for i in idx)
    valid = sum(suggestion_valid(unit_for(examples[i]), revised[i], similarity) for i in idx)
    ref_valid = sum(
        suggestion_valid(unit_for(examples[i]), examples[i].target, similarity) for i in idx
    )
    return {
        "n": len(idx),
        "exact_match": _round(share(exact, len(idx))),
        "suggestion_valid": _round(share(valid, len(idx))),
        "reference_suggestion_valid": _round(share(ref_valid, len(idx))),
    }


@dataclass(frozen=True)
class Anchor:
    """Where reviewbot's comment landed relative to the human's line."""

    covered: bool
    """The comment's range (``start_line``..``line``) includes the human's line."""
    exact: bool
    """The comment ends on the human's line (GitHub shows it there)."""


def anchoring_hits(
    examples: Sequence[Example], critiques: Sequence[str], outputs: Outputs, options: ReviewOptions
) -> dict[int, Anchor]:
    """Per anchoring example (index) whose comment would be posted: where it lands."""
    hits: dict[int, Anchor] = {}
    for i, completion in outputs.anchored_revisions.items():
        ex = examples[i]
        line = anchor_target(ex)
        if line is None:
            continue
        finding = attach_revision(Finding(unit_for(ex), critiques[i]), completion, options)
        comment = to_comment(finding, revise=options.revise)
        start = comment.start_line or comment.line
        hits[i] = Anchor(covers(start, comment.line, line), comment.line == line)
    return hits


def _anchoring_scores(eligible: Sequence[int], hits: dict[int, Anchor]) -> dict:
    posted = [i for i in eligible if i in hits]
    covered = sum(hits[i].covered for i in posted)
    exact = sum(hits[i].exact for i in posted)
    return {
        "n": len(eligible),
        "posted": len(posted),
        "covered": covered,
        "accuracy": _round(share(covered, len(posted))),
        "exact_line": _round(share(exact, len(posted))),
        "coverage": _round(share(covered, len(eligible))),
    }


def _section(
    examples: Sequence[Example],
    idx: Sequence[int],
    losses: Losses | None,
    texts: Sequence[str],
    revised: Sequence[str],
    hits: dict[int, Anchor],
    settings: EvalSettings,
) -> dict[str, Any]:
    by_task: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        by_task[examples[i].task].append(i)
    out: dict[str, Any] = {"examples": len(idx)}
    if losses is not None:
        out["loss"] = _loss_summary(losses, idx)
        out["loss"]["by_task"] = {t: _loss_summary(losses, ii) for t, ii in sorted(by_task.items())}
    if texts:
        for task in ("critique", "summarise"):
            if by_task.get(task):
                out[task] = _text_scores(examples, texts, by_task[task])
        if by_task.get("revise"):
            similarity = settings.options.min_suggestion_similarity
            out["revise"] = _revise_scores(examples, revised, by_task["revise"], similarity)
        eligible = [i for i in idx if anchor_target(examples[i]) is not None]
        if settings.anchoring and eligible:
            out["anchoring"] = _anchoring_scores(eligible, hits)
    return out


def score(
    examples: Sequence[Example],
    losses: Losses | None,
    outputs: Outputs | None,
    settings: EvalSettings = EvalSettings(),
) -> dict[str, Any]:
    """All metrics, overall and per provenance category (pure)."""
    texts: list[str] = []
    revised: list[str] = []
    hits: dict[int, Anchor] = {}
    if outputs is not None:
        max_chars = settings.options.noise.max_critique_chars
        texts = [clean_completion(c, max_chars) for c in outputs.completions]
        revised = [extract_code(c) for c in outputs.completions]
        options = replace(settings.options, revise=True)
        hits = anchoring_hits(examples, texts, outputs, options)
    everything = list(range(len(examples)))
    result = _section(examples, everything, losses, texts, revised, hits, settings)
    categories: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        categories[str(ex.provenance.get("category") or UNCATEGORISED)].append(i)
    if set(categories) != {UNCATEGORISED}:
        result["by_category"] = {
            name: _section(examples, idx, losses, texts, revised, hits, settings)
            for name, idx in sorted(categories.items())
        }
    return result


def evaluate(
    engine: Any,
    examples: Sequence[Example],
    settings: EvalSettings = EvalSettings(),
    generate: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Loss and (unless ``generate`` is False) generation metrics of ``engine`` on ``examples``."""
    started = time.perf_counter()
    max_length = min(settings.max_length, engine.context_length)
    losses = None
    if hasattr(engine, "model"):  # an inference server's engine has no weights here
        log.info("scoring the loss of %d example(s) (max %d tokens)", len(examples), max_length)
        losses = response_losses(
            engine.model,
            engine.tokenizer,
            engine.renderer,
            examples,
            max_length,
            settings.loss_batch_size,
        )
    else:
        log.info("no loss: the model is served by %s", engine.device)
    loss_seconds = time.perf_counter() - started
    outputs = None
    generated_tokens = 0

    def run(prompts: list[str], budget: int) -> list[str]:
        nonlocal generated_tokens
        out = engine.generate(prompts, max_new_tokens=budget, progress=progress)
        generated_tokens += engine.last_stats.generated_tokens
        return out

    if generate:
        outputs = generate_outputs(examples, engine.renderer, run, settings)
    result = score(examples, losses, outputs, settings)
    result["timing"] = {
        "loss_seconds": round(loss_seconds, 2),
        "generation_seconds": round(time.perf_counter() - started - loss_seconds, 2),
        "generated_tokens": generated_tokens,
    }
    return result
