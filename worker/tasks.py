"""Celery tasks: one entry point, ``run_job``, for every job kind."""

from __future__ import annotations

import logging
from typing import Any

from reviewbot.github.errors import TransientGitHubError
from reviewbot.jobs.job import Job
from reviewbot.runners.command import give_up, run_command_job
from reviewbot.runners.review import run_review_job
from reviewbot.settings.defaults import (
    JOB_MAX_RETRIES,
    JOB_RETRY_BACKOFF,
    JOB_RETRY_BACKOFF_MAX,
    TASK_RUN_JOB,
)
from worker import runtime
from worker.app import app

log = logging.getLogger(__name__)


def retry_delay(retries: int, retry_after: float | None) -> float:
    """Seconds before retry number ``retries + 1``: GitHub's hint, else exponential."""
    backoff = min(JOB_RETRY_BACKOFF * 2**retries, JOB_RETRY_BACKOFF_MAX)
    return max(retry_after or 0.0, 0.0) or backoff


@app.task(name=TASK_RUN_JOB, bind=True, max_retries=JOB_MAX_RETRIES)
def run_job(self, job_data: dict[str, Any]) -> dict[str, Any]:
    """Run one job; transient GitHub errors are retried with backoff, boundedly.

    Automatic reviews go to the review runner, slash commands to the command runner.
    """
    job = Job.from_dict(job_data)
    log.info("job %s started (attempt %d)", job.key, self.request.retries + 1)
    gh = runtime.github_app().installation(job.installation_id)
    run = run_command_job if job.interactive else run_review_job
    try:
        outcome = run(job, gh, runtime.engine, review_drafts=runtime.settings().review_drafts)
    except TransientGitHubError as e:
        if self.request.retries >= self.max_retries:
            log.error(
                "job %s: giving up after %d attempts: %s", job.key, self.request.retries + 1, e
            )
            if job.interactive:
                give_up(job, gh, e)
            raise
        delay = retry_delay(self.request.retries, e.retry_after)
        log.warning("job %s: GitHub transient error, retry in %.0fs", job.key, delay)
        raise self.retry(exc=e, countdown=delay) from e
    finally:
        gh.close()
    log.info("job %s finished: %s", job.key, outcome.status)
    return {"key": job.key, "status": outcome.status, "review_id": outcome.review_id}
