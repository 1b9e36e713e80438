"""Not posting again what the team rejected (pure).

A repository's rejected findings (:mod:`reviewbot.learning.labels`) become
:class:`SuppressionRules`: a new finding is suppressed when its fingerprint was
rejected, or when a rejected critique said nearly the same words (Jaccard similarity
of the word sets at least :data:`~reviewbot.settings.defaults.SUPPRESS_SIMILARITY`) on
the same code, whitespace-normalised (:func:`~reviewbot.learning.records.code_hash`).
A suppressed finding is counted in the review's statistics ("rejected by the team
before"), never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from reviewbot.learning.records import PostedFinding, code_hash
from reviewbot.review.findings import Comment, Dropped, Review, anchored_code
from reviewbot.settings.defaults import REJECTED_BEFORE, SUPPRESS_SIMILARITY

_WORDS = re.compile(r"[a-z0-9_]+")


def words(text: str) -> frozenset[str]:
    """The lower-case words of a critique."""
    return frozenset(_WORDS.findall(text.lower()))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two word sets (0 when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


@dataclass(frozen=True)
class SuppressionRules:
    """What a repository's team rejected: fingerprints, and critiques by code hash."""

    fingerprints: frozenset[str] = frozenset()
    by_code: dict[str, tuple[frozenset[str], ...]] = field(default_factory=dict)
    threshold: float = SUPPRESS_SIMILARITY

    def __len__(self) -> int:
        """How many rules are active (one per rejected finding)."""
        return len(self.fingerprints)

    def matches(self, comment: Comment) -> bool:
        """Whether ``comment`` repeats a rejected finding."""
        if comment.fingerprint in self.fingerprints:
            return True
        if comment.unit is None or not self.by_code:
            return False
        first = comment.start_line if comment.start_line is not None else comment.line
        rejected = self.by_code.get(code_hash(anchored_code(comment.unit, first, comment.line)))
        if not rejected:
            return False
        said = words(comment.critique or comment.body)
        return any(similarity(said, other) >= self.threshold for other in rejected)


NO_RULES = SuppressionRules()


def suppression_rules(
    rejected: Sequence[PostedFinding], threshold: float = SUPPRESS_SIMILARITY
) -> SuppressionRules:
    """The rules of a repository's rejected findings."""
    by_code: dict[str, list[frozenset[str]]] = {}
    for f in rejected:
        if f.code_hash:
            by_code.setdefault(f.code_hash, []).append(words(f.critique))
    return SuppressionRules(
        frozenset(f.fingerprint for f in rejected),
        {k: tuple(v) for k, v in by_code.items()},
        threshold,
    )


def suppress(review: Review, rules: SuppressionRules) -> Review:
    """``review`` without the findings ``rules`` match; each is counted as dropped."""
    if not len(rules):
        return review
    kept = [c for c in review.comments if not rules.matches(c)]
    if len(kept) == len(review.comments):
        return review
    gone = [
        Dropped(c.path, c.start_line if c.start_line is not None else c.line, REJECTED_BEFORE)
        for c in review.comments
        if rules.matches(c)
    ]
    return replace(review, comments=tuple(kept), dropped=review.dropped + tuple(gone))
