"""What a review job remembers, and what it holds back: it records the findings it
posted, and leaves out the ones the team rejected before in the repository.

The findings store is optional and never fatal: when it fails
(:class:`~reviewbot.learning.records.StoreError`, or anything else), the failure is
logged and the review goes on (posted, unsuppressed, unrecorded).
"""

from __future__ import annotations

import logging

from reviewbot.github.payload import ReviewPayload
from reviewbot.jobs.job import Job
from reviewbot.learning.records import posted_findings
from reviewbot.learning.suppression import NO_RULES, SuppressionRules, suppression_rules
from reviewbot.runners.ports import FindingStore, ModelPort
from reviewbot.settings.repo import RepoConfig

log = logging.getLogger(__name__)


def rules_for(store: FindingStore | None, repo: str, config: RepoConfig) -> SuppressionRules:
    """The suppression rules in effect on ``repo`` (none without a store, when the
    repository turned them off, or when the store cannot say)."""
    if store is None or not config.suppress_rejected:
        return NO_RULES
    try:
        return suppression_rules(store.rejected(repo))
    except Exception as e:  # the database is optional: review without the rules
        log.warning("%s: suppression rules unavailable (%s): %s", repo, type(e).__name__, e)
        return NO_RULES


def suppression_sentence(store: FindingStore | None, repo: str, config: RepoConfig) -> str:
    """What /help says of the suppression rules (reviewbot's own words)."""
    if store is None:
        return "Suppression of rejected findings: off (no findings database on this server)."
    if not config.suppress_rejected:
        return "Suppression of rejected findings: off (`suppress_rejected = false`)."
    rules = rules_for(store, repo, config)
    return (
        f"Suppression of rejected findings: {len(rules)} rule(s) active "
        "(findings the team rejected here are not posted again)."
    )


def record_posted(
    store: FindingStore | None,
    job: Job,
    payload: ReviewPayload,
    review_id: int,
    engine: ModelPort,
) -> None:
    """Record the findings of a posted review (a failure is logged, nothing else)."""
    if store is None:
        return
    carried = payload.posted_fingerprints
    comments = [c for c in payload.inline if c.fingerprint in carried] + [
        i.comment for i in payload.in_body if i.comment.fingerprint in carried
    ]
    if not comments:
        return
    try:
        findings = posted_findings(
            comments,
            repo=job.repo,
            pr_number=job.pr_number,
            head_sha=job.head_sha,
            inline=frozenset(c.fingerprint for c in payload.inline),
            model=engine.model_name,
            adapter=engine.adapter,
            prompt_format=engine.renderer.fmt,
            installation_id=job.installation_id,
            review_id=review_id,
        )
        new = store.record(findings)
    except Exception as e:  # the review is posted: the figures lose it, the log says so
        log.warning(
            "%s: could not record %d posted finding(s) (%s): %s",
            job.key,
            len(comments),
            type(e).__name__,
            e,
        )
        return
    log.info("%s: recorded %d posted finding(s) (%d new)", job.key, len(comments), new)
