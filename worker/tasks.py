"""Celery tasks: one entry point, ``run_job``, for every job kind.

A job of an installation over its prompt-token budget waits (a Celery retry that is
not an attempt) until the budget's window ends (:mod:`worker.quotas`). Each other
delivery of a job is one attempt, counted before it runs
(:mod:`worker.deadletters`) and run within the job's time budget
(:func:`reviewbot.jobs.deadline.job_deadline`). Transient GitHub errors are retried
with backoff; a job whose attempts are used up (by failures, or by deaths of its
worker process that no code of that process could report) goes to the dead letters,
and its check run or its command's reply says that reviewbot gave up.

Every line logged while a job runs carries its key and delivery id
(:func:`reviewbot.logs.context`); its outcome, stage timings, tokens, retries and
dead letters go to the worker's metrics (:mod:`reviewbot.metrics`).
"""

from __future__ import annotations

import logging
from functools import cache, partial
from typing import Any

import redis
from celery.exceptions import Retry

from reviewbot import logs, metrics
from reviewbot.github.errors import GitHubError, TransientGitHubError
from reviewbot.jobs.deadline import Deadline, job_deadline
from reviewbot.jobs.job import Job
from reviewbot.jobs.transient import TransientError
from reviewbot.runners.command import give_up, run_command_job
from reviewbot.runners.outcomes import refresh_outcomes
from reviewbot.runners.ports import GitHubPort
from reviewbot.runners.review import give_up_review, run_review_job
from reviewbot.settings.defaults import (
    JOB_RETRY_BACKOFF,
    JOB_RETRY_BACKOFF_MAX,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    TASK_REFRESH_ALL,
    TASK_REFRESH_OUTCOMES,
    TASK_RUN_JOB,
)
from worker import quotas, runtime
from worker.app import app
from worker.deadletters import DeadLetters
from worker.observe import observed

log = logging.getLogger(__name__)


def retry_delay(retries: int, retry_after: float | None) -> float:
    """Seconds before retry number ``retries + 1``: GitHub's hint, else exponential."""
    backoff = min(JOB_RETRY_BACKOFF * 2**retries, JOB_RETRY_BACKOFF_MAX)
    return max(retry_after or 0.0, 0.0) or backoff


#: How often a refresh of outcomes is retried after transient GitHub errors.
JOB_MAX_RETRIES_OUTCOMES = 5

#: Why a job whose count ran past its attempts is given up: no attempt reported its end.
WORKER_DIED = (
    "its worker process died during every attempt (killed, out of memory, "
    "or past the hard time limit)"
)


@cache
def dead_letters() -> DeadLetters:
    """The attempt counts and dead letters, in the queue's Redis (one client per process)."""
    client = redis.Redis.from_url(
        runtime.settings().redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )
    return DeadLetters(client)


# max_retries=None: the attempt count in Redis bounds retries and redeliveries alike.
@app.task(name=TASK_RUN_JOB, bind=True, max_retries=None)
def run_job(self, job_data: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt at a job, within its time budget; see the module docstring.

    Automatic reviews go to the review runner, slash commands to the command runner.
    """
    job = Job.from_dict(job_data)
    with logs.context(job=job.key, delivery=job.delivery_id):
        try:
            result = _run_job(self, job)
        except Retry:
            raise
        except Exception:
            metrics.worker().job(job.kind, "error")
            raise
    return result


def _run_job(self: Any, job: Job) -> dict[str, Any]:
    """:func:`run_job`, in its log context."""
    settings = runtime.settings()
    letters = dead_letters()
    if letters.is_dead(job):
        log.warning("job %s is in the dead letters: not run (requeue it to run it)", job.key)
        quotas.release(settings, job)
        metrics.worker().job(job.kind, "dead-letter")
        return {"key": job.key, "status": "dead-letter", "review_id": None}
    wait = quotas.token_wait(settings, job)
    if wait:  # a wait, not an attempt: the installation used up its token budget
        log.info(
            "job %s: installation %d is over its token budget; runs in %.0fs",
            job.key,
            job.installation_id,
            wait,
        )
        metrics.worker().retries.labels(reason="token-budget").inc()
        raise self.retry(countdown=wait)
    attempt, limit = letters.attempt(job), settings.job_max_attempts
    log.info("job %s started (attempt %d of %d)", job.key, attempt, limit)
    gh = runtime.github_app().installation(job.installation_id)
    run = run_command_job if job.interactive else run_review_job
    retrying = False
    try:
        if attempt > limit:
            return _give_up(job, gh, letters, limit, WORKER_DIED)
        with job_deadline(Deadline(settings.job_time_budget)):
            owner = job.repo.split("/")[0]
            engines = quotas.metered(observed(partial(runtime.engine, owner=owner)), settings, job)
            outcome = run(
                job,
                gh,
                engines,
                review_drafts=runtime.settings().review_drafts,
                locks=runtime.pull_locks(),
                defaults=settings.review_defaults(),
                store=runtime.finding_store(),
            )
    except TransientError as e:
        if attempt >= limit:
            return _give_up(job, gh, letters, attempt, e)
        delay = retry_delay(attempt - 1, e.retry_after)
        log.warning("job %s: transient error (%s), retry in %.0fs: %s", job.key, e.reason, delay, e)
        metrics.worker().retries.labels(reason=e.reason).inc()
        retrying = True
        raise self.retry(exc=e, countdown=delay) from e
    finally:
        gh.close()
        if not retrying:
            letters.finished(job)
            quotas.release(settings, job)
    log.info("job %s finished: %s", job.key, outcome.status)
    metrics.worker().job(job.kind, outcome.status, outcome.timings)
    return {"key": job.key, "status": outcome.status, "review_id": outcome.review_id}


def _give_up(
    job: Job, gh: GitHubPort, letters: DeadLetters, attempts: int, error: Exception | str
) -> dict[str, Any]:
    """Move ``job`` to the dead letters; its check run or reply says reviewbot gave up."""
    if isinstance(error, str):
        why = error
    elif isinstance(error, TransientGitHubError):
        why = f"GitHub kept failing ({error})"
    else:
        why = f"the model server kept failing ({error})"
    log.error("job %s: giving up after %d attempts: %s", job.key, attempts, why)
    letters.bury(job, attempts, why)
    metrics.worker().dead_letters.labels(kind=job.kind).inc()
    if job.interactive:
        give_up(job, gh, error, locks=runtime.pull_locks(), attempts=attempts)
    else:
        try:
            give_up_review(job, gh, attempts, why)
        except GitHubError as e:
            log.error("job %s: could not report that it gave up: %s", job.key, e)
    log.info("job %s finished: gave-up", job.key)
    metrics.worker().job(job.kind, "gave-up")
    return {"key": job.key, "status": "gave-up", "review_id": None}


@app.task(name=TASK_REFRESH_ALL)
def refresh_all_outcomes() -> dict[str, Any]:
    """Celery beat's entry: one :func:`refresh_installation_outcomes` task per installation
    with findings whose outcome is not settled."""
    store = runtime.finding_store()
    if store is None:
        return {"installations": 0, "error": "no findings database"}
    installations = store.installations()
    for iid in installations:
        refresh_installation_outcomes.delay(iid)
    log.info("outcome refresh queued for %d installation(s)", len(installations))
    return {"installations": len(installations)}


@app.task(name=TASK_REFRESH_OUTCOMES, bind=True, max_retries=JOB_MAX_RETRIES_OUTCOMES)
def refresh_installation_outcomes(self, installation_id: int) -> dict[str, Any]:
    """Refresh the outcome labels of one installation's findings, within the server's
    GitHub request budget per run; transient GitHub errors are retried with backoff."""
    settings = runtime.settings()
    store = runtime.finding_store()
    if store is None:
        return {"installation": installation_id, "error": "no findings database"}
    gh = runtime.github_app().installation(installation_id)
    try:
        with logs.context(job=f"outcomes:{installation_id}"):
            report = refresh_outcomes(
                gh,
                store,
                installation_id=installation_id,
                max_requests=settings.outcome_max_requests,
            )
    except TransientGitHubError as e:
        delay = retry_delay(self.request.retries, e.retry_after)
        log.warning("outcomes of installation %d: retry in %.0fs (%s)", installation_id, delay, e)
        raise self.retry(exc=e, countdown=delay) from e
    finally:
        gh.close()
    return {
        "installation": installation_id,
        "pulls": report.pulls,
        "labels": dict(report.labels),
        "requests": report.requests,
        "stopped": report.stopped,
    }
