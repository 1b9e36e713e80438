"""The Celery application: Redis broker and result backend, GPU-safe defaults.

Start a worker with ``reviewbot worker`` (or ``celery -A worker.app worker
--pool=solo --concurrency=1 -Q interactive,reviews``). Importing this module
loads no model: each worker process loads it lazily, once, on its first job.
"""

from __future__ import annotations

from celery import Celery

from reviewbot.settings.defaults import QUEUE_REVIEWS, TASK_HARD_TIME_LIMIT, TASK_SOFT_TIME_LIMIT
from reviewbot.settings.server import Settings


def make_celery(settings: Settings) -> Celery:
    """A Celery app for reviewbot jobs.

    acks_late + reject_on_worker_lost: a job whose worker dies is redelivered.
    prefetch 1: a worker holds one job at a time, so interactive jobs are not
    stuck behind prefetched reviews. The visibility timeout stays above the
    hard time limit, so a running job is never handed to a second worker.
    """
    url = settings.redis_url
    visibility = settings.visibility_timeout
    hard = min(TASK_HARD_TIME_LIMIT, max(1, visibility - 1))
    app = Celery("reviewbot", broker=url, backend=url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=hard,
        task_soft_time_limit=min(TASK_SOFT_TIME_LIMIT, max(1, hard - 1)),
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
