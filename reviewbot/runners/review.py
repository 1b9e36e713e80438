"""The review-job runner: fetch → plan → review → post, for one automatic or /review job.

Written against :class:`~reviewbot.runners.ports.GitHubPort` and the model port;
everything between fetching the diff and posting the review is the pure core
(plan, interdiff, pipeline, payload, check run).
"""

from __future__ import annotations

import logging
import time

from reviewbot.github.checks import CheckRunResult, check_run_failure, check_run_success
from reviewbot.github.errors import GitHubError, TransientGitHubError
from reviewbot.github.markers import Markers
from reviewbot.github.payload import build_review_payload
from reviewbot.jobs.job import HEAD_REVIEW_KINDS, Job
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.interdiff import restrict_to_interdiff
from reviewbot.review.pipeline import review_plan
from reviewbot.runners.ports import EngineProvider, GitHubPort, Outcome

log = logging.getLogger(__name__)


class Stages:
    """Seconds spent per stage of a job, logged as one ``timings: fetch=…s …`` line."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, stage: str) -> None:
        """Add the time since the previous mark to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    def __str__(self) -> str:
        return " ".join(f"{stage}={s:.3f}s" for stage, s in self.seconds.items())


def run_review_job(
    job: Job,
    gh: GitHubPort,
    engines: EngineProvider,
    review_drafts: bool = False,
    reply_to: int | None = None,
) -> Outcome:
    """Review the PR at ``job.head_sha`` and post one review; idempotent.

    What was posted before (review and finding markers) is read once, up front.

    A rerun (redelivery after a crash, a duplicate job) finds the review marker
    of (kind, head sha) and posts nothing. Transient GitHub errors propagate for
    the queue to retry; any other failure completes the check run as failed
    with a readable message and is returned, never dropped silently.
    ``reply_to``: the /review comment this review answers (marked in its body).
    """
    if job.kind not in HEAD_REVIEW_KINDS:
        raise ValueError(f"run_review_job cannot run a {job.kind!r} job")
    stages = Stages()
    posted = gh.markers(job.repo, job.pr_number)
    if any((m.kind, m.head_sha) == (job.kind, job.head_sha) for m in posted.reviews):
        log.info("%s: %s review of %s already posted", job.key, job.kind, job.head_sha[:7])
        return Outcome("already-reviewed")
    pull = gh.pull(job.repo, job.pr_number)
    if pull.head_sha != job.head_sha:
        log.info("%s: the PR moved on to %s; skipping", job.key, pull.head_sha[:7])
        return Outcome("superseded", detail=pull.head_sha)
    if pull.state != "open":
        return Outcome("skipped", detail=f"pull request is {pull.state}")
    check_id = gh.start_check_run(job.repo, job.head_sha)
    try:
        outcome = _review(job, gh, engines, posted, pull.draft, review_drafts, reply_to, stages)
    except TransientGitHubError:
        note = "GitHub was unavailable; the review will be retried."
        gh_safe_complete(gh, job, check_id, "neutral", "Retrying", note)
        raise
    except Exception as e:  # reported on the check run, never dropped
        log.warning("%s failed: %s", job.key, type(e).__name__, exc_info=True)
        result = check_run_failure(e)
        gh_safe_complete(gh, job, check_id, result.conclusion, result.title, result.summary)
        return Outcome("failed", detail=result.summary)
    done, result = outcome
    gh.complete_check_run(job.repo, check_id, result.conclusion, result.title, result.summary)
    stages.done("post")
    log.info("%s: timings: %s", job.key, stages)
    return done


def gh_safe_complete(
    gh: GitHubPort, job: Job, check_id: int, conclusion: str, title: str, summary: str
) -> None:
    """Complete the check run, logging (not raising) if GitHub refuses."""
    try:
        gh.complete_check_run(job.repo, check_id, conclusion, title, summary)
    except GitHubError as e:
        log.warning("%s: could not complete check run %d: %s", job.key, check_id, e)


def _review(
    job: Job,
    gh: GitHubPort,
    engines: EngineProvider,
    posted: Markers,
    draft: bool,
    drafts: bool,
    reply_to: int | None = None,
    stages: Stages | None = None,
) -> tuple[Outcome, CheckRunResult]:
    stages = stages or Stages()
    config = gh.repo_config(job.repo)
    stages.done("fetch")
    if draft and not config.reviews_drafts(drafts) and not job.interactive:
        note = "Draft pull requests are not reviewed here (set `drafts = true` to change that)."
        return Outcome("skipped", detail="draft"), CheckRunResult("skipped", "Draft", note)
    diff = gh.pull_diff(job.repo, job.pr_number)
    stages.done("fetch")
    plan = plan_diff(diff, config.plan_limits())
    stages.done("plan")
    if job.kind == "incremental":
        since = last_reviewed_head(job, posted)
        if since is not None:
            interdiff = gh.compare_diff(job.repo, since, job.head_sha)
            stages.done("fetch")
            plan, unchanged = restrict_to_interdiff(plan, interdiff)
            stages.done("plan")
            log.info("%s: %d unit(s) unchanged since %s", job.key, unchanged, since[:7])
    engine = engines(config.adapter)
    stages.done("model")
    review = review_plan(plan, engine.generate, engine.renderer, config.review_options())
    stages.done("generate")
    payload = build_review_payload(
        review,
        job.kind,
        job.head_sha,
        posted.findings,
        config.max_comments,
        reply_to,
    )
    if payload is None:
        return Outcome("nothing-new"), check_run_success(None, job.head_sha)
    review_id = gh.post_review(job.repo, job.pr_number, payload)
    log.info("%s: posted review %d (%d inline)", job.key, review_id, len(payload.inline))
    return Outcome("posted", review_id), check_run_success(payload, job.head_sha)


def last_reviewed_head(job: Job, posted: Markers) -> str | None:
    """The push's previous head if reviewbot reviewed it, else None.

    None means "review every unit": nothing was reviewed at the previous head
    (or history was rewritten); findings already posted are still never
    posted again, by their fingerprints.
    """
    heads = {m.head_sha for m in posted.reviews if m.kind in HEAD_REVIEW_KINDS}
    return job.before_sha if job.before_sha in heads else None
