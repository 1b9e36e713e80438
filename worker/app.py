"""The Celery application: Redis broker and result backend, GPU-safe defaults.

Start a worker with ``reviewbot worker``: Celery's prefork pool with one child
process, which runs the jobs; the parent only talks to Redis and enforces Celery's
time limits (the solo pool enforces none). Importing this module loads no model:
the child loads it lazily, once, on its first job (and a replacement child, after
one was killed, on its own first job).
"""

from __future__ import annotations

from celery import Celery

from reviewbot.settings.defaults import QUEUE_REVIEWS
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
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
    )
    return app


app = make_celery(Settings.from_env())
