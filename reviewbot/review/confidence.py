"""How sure the model is of a finding: a confidence in 0..1 from its own scores (pure).

The model scores, teacher-forced (:meth:`reviewbot.model.generation.Engine.score`),
answers to the very prompt its critique was generated from: the critique itself,
and :data:`~reviewbot.settings.defaults.NO_FINDING_ANSWER` (what a reviewer says
when a unit has no issue). Each score is the mean log-probability per token
(length-normalised log-likelihood), ``l_c`` for the critique and ``l_n`` for the
"no issues" answer. The candidate confidences (:data:`CONFIDENCE_METHODS`):

- ``likelihood``: ``exp(l_c)``, the critique's geometric-mean token probability;
- ``no-finding``: ``1 - exp(l_n)``, how little the model expects "no issues";
- ``contrast``: ``exp(l_c) / (exp(l_c) + exp(l_n))`` (the logistic of
  ``l_c - l_n``), the critique's share of the two answers.

``bench/review_signal.py`` measures how well each separates hunks human reviewers
commented on from merged hunks nobody commented on; the pipeline uses
:data:`~reviewbot.settings.defaults.CONFIDENCE_METHOD`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from reviewbot.review.findings import Dropped, Finding
from reviewbot.settings.defaults import (
    BELOW_CONFIDENCE,
    CONFIDENCE_METHOD,
    CONFIDENCE_METHODS,
    NO_FINDING_ANSWER,
)

log = logging.getLogger(__name__)

#: ``score(prompts, completions)``: the mean log-probability per token of each
#: completion given its prompt (the model port's ``score``).
Score = Callable[[list[str], list[str]], list[float]]


def confidence(method: str, critique_logp: float, none_logp: float | None) -> float:
    """The confidence (0..1) of a critique by ``method`` from its mean token log-probs.

    ``none_logp`` (the "no issues" answer's) is needed by ``no-finding`` and
    ``contrast`` only.
    """
    if method == "likelihood":
        return math.exp(min(critique_logp, 0.0))
    if none_logp is None:
        raise ValueError(f"the {method!r} confidence needs the 'no issues' answer's score")
    if method == "no-finding":
        return 1.0 - math.exp(min(none_logp, 0.0))
    if method == "contrast":
        margin = critique_logp - none_logp
        if margin >= 0:
            return 1.0 / (1.0 + math.exp(-margin))
        e = math.exp(margin)
        return e / (1.0 + e)
    raise _unknown(method)


def _unknown(method: str) -> ValueError:
    return ValueError(
        f"unknown confidence method {method!r} (one of {', '.join(CONFIDENCE_METHODS)})"
    )


def needs_none(method: str) -> bool:
    """Whether ``method`` scores the "no issues" answer."""
    return method in ("no-finding", "contrast")


def needs_critique(method: str) -> bool:
    """Whether ``method`` scores the critique."""
    return method in ("likelihood", "contrast")


def raw_scores(
    prompts: Sequence[str],
    critiques: Sequence[str],
    score: Score,
    critique: bool = True,
    none: bool = True,
) -> tuple[list[float | None], list[float | None]]:
    """(critique scores, "no issues" scores) per prompt, in one batched ``score`` call.

    A list is all None when its answer is not asked for. ValueError when ``score``
    returns the wrong number of scores.
    """
    if len(prompts) != len(critiques):
        raise ValueError(f"{len(prompts)} prompts but {len(critiques)} critiques")
    pairs_p: list[str] = []
    pairs_c: list[str] = []
    if critique:
        pairs_p += list(prompts)
        pairs_c += list(critiques)
    if none:
        pairs_p += list(prompts)
        pairs_c += [NO_FINDING_ANSWER] * len(prompts)
    got = score(pairs_p, pairs_c) if pairs_p else []
    if len(got) != len(pairs_p):
        raise ValueError(f"score returned {len(got)} scores for {len(pairs_p)} completions")
    n = len(prompts)
    crit: list[float | None] = list(got[:n]) if critique else [None] * n
    rest = got[n:] if critique else got
    nothing: list[float | None] = list(rest) if none else [None] * n
    return crit, nothing


def confidences(
    prompts: Sequence[str],
    critiques: Sequence[str],
    score: Score,
    method: str = CONFIDENCE_METHOD,
) -> list[float]:
    """The confidence of each critique given the prompt it answers, by ``method``."""
    if method not in CONFIDENCE_METHODS:
        raise _unknown(method)
    crit, nothing = raw_scores(
        prompts, critiques, score, critique=needs_critique(method), none=needs_none(method)
    )
    return [
        confidence(method, c if c is not None else 0.0, n)
        for c, n in zip(crit, nothing, strict=True)
    ]


def rated(
    findings: Sequence[Finding],
    prompts: Sequence[str],
    score: Score,
    method: str = CONFIDENCE_METHOD,
) -> list[Finding]:
    """``findings`` with their confidence: each critique scored against ``prompts[i]``,
    the prompt it answers."""
    if not findings:
        return []
    values = confidences(prompts, [f.critique for f in findings], score, method)
    out = [replace(f, confidence=c) for f, c in zip(findings, values, strict=True)]
    for f in out:
        log.debug("confidence %.3f: %s:%d", f.confidence, f.unit.path, f.unit.start_line)
    return out


def sure_enough(finding: Finding, min_confidence: float) -> bool:
    """Whether ``finding`` may be posted under ``min_confidence`` (unscored: only at 0)."""
    if finding.confidence is None:
        return min_confidence <= 0
    return finding.confidence >= min_confidence


def below_confidence(finding: Finding) -> Dropped:
    """How a finding under the threshold is counted."""
    return Dropped(finding.unit.path, finding.unit.start_line, BELOW_CONFIDENCE)


def rate_findings(
    findings: Sequence[Finding],
    prompts: Sequence[str],
    score: Score | None,
    min_confidence: float,
    method: str = CONFIDENCE_METHOD,
) -> tuple[list[Finding], list[Dropped]]:
    """Rate ``findings`` (:func:`rated`); keep those at or above ``min_confidence`` and
    count the rest as dropped ("below confidence") rather than lose them.

    Without ``score`` the findings stay unscored (confidence None), which only a
    threshold of 0 allows (ValueError otherwise: a threshold is never silently ignored).
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be between 0 and 1, not {min_confidence}")
    if score is None:
        if min_confidence > 0:
            raise ValueError("a confidence threshold needs a score function")
        return list(findings), []
    all_rated = rated(findings, prompts, score, method)
    kept = [f for f in all_rated if sure_enough(f, min_confidence)]
    dropped = [below_confidence(f) for f in all_rated if not sure_enough(f, min_confidence)]
    if dropped:
        log.info("%d finding(s) below the confidence threshold %.2f", len(dropped), min_confidence)
    return kept, dropped
