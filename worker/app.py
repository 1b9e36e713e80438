"""The Celery application: Redis broker and result backend, GPU-safe defaults.

Start a worker with ``reviewbot worker``: Celery's prefork pool with one child
process, which runs the jobs; the parent only talks to Redis and enforces Celery's
time limits (the solo pool enforces none). Importing this module loads no model:
the child loads it when it starts, before it takes a job, and the worker consumes
jobs only once it has (:mod:`worker.readiness`; a replacement child, after one was
killed, loads it again). Two bootsteps of the parent: ``worker.observe:Observe``
(metrics, log set-up) and ``worker.readiness:WaitForModel``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.utils.log import get_multiprocessing_logger

from reviewbot import logs
from reviewbot.settings.defaults import (
    QUEUE_OUTCOMES,
    QUEUE_REVIEWS,
    TASK_REFRESH_ALL,
    TASK_REFRESH_OUTCOMES,
    WORKER_STARTUP_GRACE,
)
from reviewbot.settings.server import Settings, SettingsError


def make_celery(settings: Settings) -> Celery:
    """A Celery app for reviewbot jobs.

    acks_late + reject_on_worker_lost: a job whose worker process dies (killed,
    out of memory) is redelivered; acks_on_timeout off: so is one killed at the
    hard time limit (each delivery counts an attempt, and a job out of attempts goes
    to the dead letters: ``worker.tasks``). prefetch 1: a worker holds one job at a
    time, so interactive jobs are not stuck behind prefetched reviews.

    The time limits follow the job's time budget (``Settings.task_time_limits``);
    the visibility timeout must stay above the hard limit, so a running job is never
    handed to a second worker (SettingsError otherwise).
    """
    problem = settings.time_limit_problem()
    if problem:
        raise SettingsError([problem])
    url = settings.redis_url
    visibility = settings.visibility_timeout
    soft, hard = settings.task_time_limits
    app = Celery("reviewbot", broker=url, backend=url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=1,
        task_time_limit=hard,
        task_soft_time_limit=soft,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Scan for unacknowledged jobs of dead workers on every poll.
            "unacked_restore_throttle": 1,
            # Consume queues in the order given (-Q interactive,reviews), no
            # round robin: interactive commands always go first.
            "queue_order_strategy": "priority",
        },
        result_backend_transport_options={"visibility_timeout": visibility},
        result_expires=24 * 3600,
        task_default_queue=QUEUE_REVIEWS,
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # The child loads the model before it says it is up: give it the load's time.
        worker_proc_alive_timeout=settings.model_load_timeout + WORKER_STARTUP_GRACE,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Outcome refreshes (GitHub reads, no model) go to their own queue; Celery beat
        # (``reviewbot beat``) fans one out per installation on the interval.
        task_routes={
            TASK_REFRESH_ALL: {"queue": QUEUE_OUTCOMES},
            TASK_REFRESH_OUTCOMES: {"queue": QUEUE_OUTCOMES},
        },
        beat_schedule={
            "refresh-outcomes": {
                "task": TASK_REFRESH_ALL,
                "schedule": float(settings.outcome_refresh_seconds),
            }
        },
    )
    app.steps["worker"].update({"worker.observe:Observe", "worker.readiness:WaitForModel"})
    return app


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def format_celery_loggers(logger: logging.Logger | None = None, **_: Any) -> None:
    """After Celery set up its logging (in the worker and in its job process): the
    handlers it added to its own loggers (billiard's, tasks') write lines in
    reviewbot's format (:mod:`reviewbot.logs`: text or JSON). The root logger keeps
    reviewbot's handler (``worker_hijack_root_logger`` is off)."""
    fmt = logs.log_format()
    loggers = [get_multiprocessing_logger()] + ([logger] if logger is not None else [])
    for each in loggers:
        for handler in each.handlers:
            if not getattr(handler, "_reviewbot", False):
                handler.setFormatter(logs.formatter(fmt))
                handler.addFilter(logs.ContextFilter())


app = make_celery(Settings.from_env())
