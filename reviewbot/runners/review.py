"""The review-job runner: fetch → plan → review → post, for one automatic or /review job.

Written against :class:`~reviewbot.runners.ports.GitHubPort` and the model port;
everything between fetching the diff and posting the review is the pure core
(plan, interdiff, pipeline, payload, check run).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from reviewbot.github.checks import (
    CheckRunResult,
    check_run_already_posted,
    check_run_closed,
    check_run_failure,
    check_run_gave_up,
    check_run_success,
    check_run_superseded,
    check_run_timed_out,
)
from reviewbot.github.data import PullInfo
from reviewbot.github.errors import GitHubError, TransientGitHubError
from reviewbot.github.markers import Markers, automatic_state
from reviewbot.github.payload import build_review_payload
from reviewbot.jobs.deadline import Deadline, DeadlineExceeded, current_deadline
from reviewbot.jobs.job import AUTOMATIC_KINDS, HEAD_REVIEW_KINDS, Job
from reviewbot.jobs.transient import TransientError
from reviewbot.learning.suppression import suppress
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.interdiff import restrict_to_interdiff
from reviewbot.review.markdown import inert
from reviewbot.review.pipeline import ReadFile, review_plan
from reviewbot.runners.describing import describe_on_open
from reviewbot.runners.ports import (
    PROCESS_LOCKS,
    EngineProvider,
    FindingStore,
    GitHubPort,
    Outcome,
    PullLocks,
    rating,
)
from reviewbot.runners.recording import record_posted, rules_for
from reviewbot.settings.defaults import SERVER_REVIEW_DEFAULTS, ReviewOptions
from reviewbot.settings.repo import RepoConfig

log = logging.getLogger(__name__)


#: How a stage is named to users (a check run "… time budget (during generation)").
_STAGE_NAMES = {
    "fetch": "fetching",
    "plan": "planning",
    "model": "model loading",
    "generate": "generation",
}


class Stages:
    """Seconds spent per stage of a job, logged as one ``timings: fetch=…s …`` line.

    With a ``deadline``, the end of every stage is also where the job's deadline is
    checked (:class:`~reviewbot.jobs.deadline.DeadlineExceeded` past it).
    """

    def __init__(self, deadline: Deadline | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()
        self._deadline = deadline

    def mark(self, stage: str) -> None:
        """Add the time since the previous mark to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    def done(self, stage: str) -> None:
        """Mark the end of ``stage``, then check the deadline."""
        self.mark(stage)
        if self._deadline is not None:
            self._deadline.check(_STAGE_NAMES.get(stage, stage))

    def __str__(self) -> str:
        return " ".join(f"{stage}={s:.3f}s" for stage, s in self.seconds.items())


def run_review_job(
    job: Job,
    gh: GitHubPort,
    engines: EngineProvider,
    review_drafts: bool = False,
    reply_to: int | None = None,
    locks: PullLocks = PROCESS_LOCKS,
    defaults: ReviewOptions = SERVER_REVIEW_DEFAULTS,
    store: FindingStore | None = None,
) -> Outcome:
    """Review the PR at ``job.head_sha`` and post one review; idempotent.

    What reviewbot posted before (review and finding markers) is read up front, and
    again under the pull request's lock right before posting (see :func:`_review`).

    A rerun (redelivery after a crash, a duplicate job) finds the review marker
    of (kind, head sha) and posts nothing. Transient GitHub errors propagate for
    the queue to retry; any other failure completes the check run as failed
    with a readable message and is returned, never dropped silently.
    ``reply_to``: the /review comment this review answers (marked in its body).
    ``locks``: the pull request's lock, held from re-reading the markers to posting.
    ``defaults``: what a review produces where the repository's configuration does not
    say (the server's profile threshold and ``changed_lines``).
    ``store``: where posted findings are recorded and rejected ones looked up
    (:mod:`reviewbot.runners.recording`; None: neither).

    The check run carries the job's key as its ``external_id``: an attempt after a
    transient error or a killed worker finds the run an earlier attempt left in
    progress and completes that one (one check run per job, never one left in
    progress). Inside a job's deadline (:func:`~reviewbot.jobs.deadline.job_deadline`)
    every stage checks it; past it the run ends ``timed_out`` and nothing is posted.
    """
    if job.kind not in HEAD_REVIEW_KINDS:
        raise ValueError(f"run_review_job cannot run a {job.kind!r} job")
    stages = Stages(current_deadline())
    posted = gh.markers(job.repo, job.pr_number)
    if any((m.kind, m.head_sha) == (job.kind, job.head_sha) for m in posted.reviews):
        log.info("%s: %s review of %s already posted", job.key, job.kind, job.head_sha[:7])
        _complete_left_open(gh, job, check_run_already_posted(job.head_sha))
        return Outcome("already-reviewed")
    pull = gh.pull(job.repo, job.pr_number)
    if pull.head_sha != job.head_sha:
        log.info("%s: the PR moved on to %s; skipping", job.key, pull.head_sha[:7])
        _complete_left_open(gh, job, check_run_superseded(pull.head_sha))
        return Outcome("superseded", detail=pull.head_sha)
    if pull.state != "open":
        _complete_left_open(gh, job, check_run_closed(pull.state))
        return Outcome("skipped", detail=f"pull request is {pull.state}")
    check_id = gh.find_check_run(job.repo, job.head_sha, job.key)
    if check_id is None:
        check_id = gh.start_check_run(job.repo, job.head_sha, job.key)
    else:
        log.info("%s: continuing check run %d of an earlier attempt", job.key, check_id)
    result: CheckRunResult | None = None
    try:
        done, result = _review(
            job,
            gh,
            engines,
            posted,
            pull,
            review_drafts,
            reply_to,
            stages,
            locks,
            defaults,
            store,
        )
        if done.status in ("already-reviewed", "already-answered") and (
            gh.find_check_run(job.repo, job.head_sha, job.key) != check_id
        ):
            result = None  # a copy of this job shared the run and completed it: keep its word
    except TransientError:
        log.info("%s: check run %d stays in progress for the retry", job.key, check_id)
        raise
    except DeadlineExceeded as e:
        log.warning("%s: %s", job.key, e)
        result = check_run_timed_out(e)
        done = Outcome("failed", detail=result.summary)
    except Exception as e:  # reported on the check run, never dropped
        log.warning("%s failed: %s", job.key, type(e).__name__, exc_info=True)
        result = check_run_failure(e)
        done = Outcome("failed", detail=result.summary)
    finally:
        if result is not None:
            gh_safe_complete(gh, job, check_id, result.conclusion, result.title, result.summary)
    if done.status != "failed":
        stages.mark("post")
        log.info("%s: timings: %s", job.key, stages)
    return replace(done, timings=dict(stages.seconds))


def give_up_review(job: Job, gh: GitHubPort, attempts: int, why: str) -> Outcome:
    """After the last attempt: end the job's check run saying reviewbot gave up.

    The run an attempt left in progress is completed (one is created when no attempt
    got that far); if an attempt did post the review, the run says so instead.
    GitHub errors propagate: the caller decides how hard to try.
    """
    posted = gh.markers(job.repo, job.pr_number)
    if any((m.kind, m.head_sha) == (job.kind, job.head_sha) for m in posted.reviews):
        _complete_left_open(gh, job, check_run_already_posted(job.head_sha))
        return Outcome("already-reviewed")
    result = check_run_gave_up(attempts, why)
    check_id = gh.find_check_run(job.repo, job.head_sha, job.key)
    if check_id is None:
        check_id = gh.start_check_run(job.repo, job.head_sha, job.key)
    gh.complete_check_run(job.repo, check_id, result.conclusion, result.title, result.summary)
    return Outcome("gave-up", detail=result.summary)


def _complete_left_open(gh: GitHubPort, job: Job, result: CheckRunResult) -> None:
    """Complete the check run an earlier attempt at ``job`` left in progress, if any."""
    check_id = gh.find_check_run(job.repo, job.head_sha, job.key)
    if check_id is not None:
        log.info("%s: completing check run %d left by an earlier attempt", job.key, check_id)
        gh_safe_complete(gh, job, check_id, result.conclusion, result.title, result.summary)


def gh_safe_complete(
    gh: GitHubPort, job: Job, check_id: int, conclusion: str, title: str, summary: str
) -> None:
    """Complete the check run; a refusal is logged, not raised.

    A transient error propagates, so that the queue retries the job and the retry
    completes the run it finds in progress (by the job's key).
    """
    try:
        gh.complete_check_run(job.repo, check_id, conclusion, title, summary)
    except TransientGitHubError:
        raise
    except GitHubError as e:
        log.warning("%s: could not complete check run %d: %s", job.key, check_id, e)


def _review(
    job: Job,
    gh: GitHubPort,
    engines: EngineProvider,
    posted: Markers,
    pull: PullInfo,
    drafts: bool,
    reply_to: int | None = None,
    stages: Stages | None = None,
    locks: PullLocks = PROCESS_LOCKS,
    defaults: ReviewOptions = SERVER_REVIEW_DEFAULTS,
    store: FindingStore | None = None,
) -> tuple[Outcome, CheckRunResult]:
    """Plan, generate, then post under the pull request's lock.

    ``posted`` (read when the job started) decides what the incremental review
    covers; just before posting, under ``locks``, the markers are read again: a
    review of this kind and head posted meanwhile by another job ends this one as
    already-reviewed, and findings it posted are not posted again.
    """
    stages = stages or Stages()
    config = gh.repo_config(job.repo)
    stages.done("fetch")
    if pull.draft and not config.reviews_drafts(drafts) and not job.interactive:
        note = "Draft pull requests are not reviewed here (set `drafts = true` to change that)."
        return Outcome("skipped", detail="draft"), CheckRunResult("skipped", "Draft", note)
    if job.kind in AUTOMATIC_KINDS:
        why = automatic_skip(gh, job, config, pull)
        if why is not None:
            log.info("%s: not reviewed automatically: %s", job.key, why)
            note = f"Not reviewed automatically: {inert(why)}. Comment `/review` for a review now."
            return Outcome("skipped", detail=why), CheckRunResult("skipped", "Skipped", note)
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
    score, options = rating(engine, config.review_options(defaults))
    review = review_plan(
        plan,
        engine.generate,
        engine.renderer,
        options,
        score=score,
        read_file=head_reader(gh, job.repo, job.head_sha),
    )
    review = suppress(review, rules_for(store, job.repo, config))
    stages.done("generate")
    with locks.hold(job.repo, job.pr_number):
        fresh = gh.markers(job.repo, job.pr_number, conversation=reply_to is not None)
        if any((m.kind, m.head_sha) == (job.kind, job.head_sha) for m in fresh.reviews):
            log.info("%s: another job posted this review first", job.key)
            return Outcome("already-reviewed"), _posted_elsewhere(job.head_sha)
        if reply_to is not None and reply_to in fresh.replies:
            log.info("%s: another job answered comment %d", job.key, reply_to)
            return Outcome("already-answered"), _posted_elsewhere(job.head_sha)
        payload = build_review_payload(
            review,
            job.kind,
            job.head_sha,
            fresh.findings,
            config.max_comments,
            reply_to,
        )
        review_id = None
        if payload is not None:
            review_id = gh.post_review(job.repo, job.pr_number, payload)
    if job.kind == "auto" and config.describe_on_open:
        said = describe_on_open(gh, job.repo, job.pr_number, config, engine, locks)
        log.info("%s: describe_on_open: %s", job.key, said)
    if payload is None or review_id is None:
        return Outcome("nothing-new"), check_run_success(None, job.head_sha)
    record_posted(store, job, payload, review_id, engine)
    log.info("%s: posted review %d (%d inline)", job.key, review_id, len(payload.inline))
    return Outcome("posted", review_id), check_run_success(payload, job.head_sha)


def automatic_skip(gh: GitHubPort, job: Job, config: RepoConfig, pull: PullInfo) -> str | None:
    """Why an automatic review of ``pull`` does not run (None: it runs): /pause or /ignore
    (reviewbot's last state marker on the pull request; only its own comments count),
    ``auto_review = false``, or an ``ignore_*`` key of the repository's configuration."""
    texts = [c.body for c in gh.issue_comments(job.repo, job.pr_number) if c.by_reviewbot]
    state = automatic_state(texts)
    if state == "paused":
        return "automatic reviews of this pull request are paused (`/pause`; `/resume` undoes it)"
    if state == "ignored":
        return "this pull request is ignored (`/ignore`; `/resume` undoes it)"
    return config.ignore_reason(pull.title, pull.labels, pull.author, pull.head_ref)


def head_reader(gh: GitHubPort, repo: str, head_sha: str) -> ReadFile:
    """The pipeline's ``read_file``: a file's text at the reviewed head, from GitHub.

    Called only for files with a suggestion to parse. A file GitHub will not give
    (too large, not UTF-8, gone) is None: its suggestions are parsed with their
    hunk only (logged). A transient error propagates, for the queue to retry the job.
    """

    def read(path: str) -> str | None:
        try:
            return gh.file_text(repo, path, head_sha)
        except TransientGitHubError:
            raise
        except GitHubError as e:
            log.info("%s: cannot read %s at %s (%s): hunk only", repo, path, head_sha[:7], e)
            return None

    return read


def _posted_elsewhere(head_sha: str) -> CheckRunResult:
    """The check run of a job whose review another job posted first."""
    return CheckRunResult(
        "success",
        "Already reviewed",
        f"Another reviewbot job reviewed `{head_sha[:7]}` first; nothing was posted twice.",
    )


def last_reviewed_head(job: Job, posted: Markers) -> str | None:
    """The push's previous head if reviewbot reviewed it, else None.

    None means "review every unit": nothing was reviewed at the previous head
    (or history was rewritten); findings already posted are still never
    posted again, by their fingerprints.
    """
    heads = {m.head_sha for m in posted.reviews if m.kind in HEAD_REVIEW_KINDS}
    return job.before_sha if job.before_sha in heads else None
