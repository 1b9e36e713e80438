"""Publishing jobs to the workers' Celery queues (by task name: no worker code is imported)."""

from __future__ import annotations

from reviewbot.jobs.job import Job
from reviewbot.settings.defaults import (
    ENQUEUE_MAX_RETRIES,
    ENQUEUE_RETRY_INTERVAL,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    TASK_RUN_JOB,
)


class CeleryEnqueuer:
    """Sends jobs to the workers by task name; imports no worker or model code."""

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.celery = Celery("reviewbot-web", broker=broker_url, backend=broker_url)
        self.celery.conf.update(
            broker_connection_timeout=REDIS_CONNECT_TIMEOUT,
            broker_transport_options={
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
            },
            task_publish_retry_policy={
                "max_retries": ENQUEUE_MAX_RETRIES,
                "interval_start": 0,
                "interval_step": ENQUEUE_RETRY_INTERVAL,
                "interval_max": ENQUEUE_RETRY_INTERVAL,
            },
            task_serializer="json",
        )

    def __call__(self, job: Job) -> None:
        """Publish ``job`` (raises kombu's OperationalError when the broker is down).

        ``ignore_result``: the web process never reads results, and a pending
        result would keep a Redis pub/sub subscription open per job.
        """
        self.celery.send_task(
            TASK_RUN_JOB, args=[job.to_dict()], queue=job.queue, ignore_result=True
        )
