"""A worker's metrics and log lines (see :mod:`reviewbot.metrics`, :mod:`reviewbot.logs`).

The :class:`Observe` bootstep, in the worker's parent process: before the pool
forks, a fresh multiprocess directory for the metrics its job process records and
the secrets to mask in logs; once the pool runs, the metrics on
``REVIEWBOT_METRICS_PORT`` (the job process's, added up, and the queue depths read
from Redis at each scrape). With ``REVIEWBOT_LOG_FORMAT=json``, Celery's console
notices are JSON lines too.

:func:`observed` wraps a job's models so that each generate call counts its tokens.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import redis
from celery import bootsteps
from prometheus_client import start_http_server

from reviewbot import logs, metrics
from reviewbot.runners.ports import EngineProvider, ModelPort
from reviewbot.settings.defaults import REDIS_CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT
from worker import runtime
from worker.readiness import fail

log = logging.getLogger(__name__)

#: The address the metrics are served on (all interfaces: Prometheus scrapes them).
METRICS_HOST = "0.0.0.0"


class ObservedModel:
    """A model whose generate calls count their tokens in the worker's metrics."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, prompts: list[str]) -> list[str]:
        out = self.model.generate(prompts)
        stats = getattr(self.model, "last_stats", None)
        if stats is not None:
            metrics.worker().generated(stats.prompt_tokens, stats.generated_tokens, stats.seconds)
            log.info(
                "generated %d tokens for %d prompts (%d prompt tokens) in %.2f s",
                stats.generated_tokens,
                stats.prompts,
                stats.prompt_tokens,
                stats.seconds,
            )
        return out


def observed(engines: EngineProvider) -> EngineProvider:
    """``engines`` whose models count their tokens (:class:`ObservedModel`)."""

    def provide(adapter: str | None) -> ModelPort:
        return ObservedModel(engines(adapter))  # type: ignore[return-value]

    return provide


@cache
def _broker() -> redis.Redis:
    return redis.Redis.from_url(
        runtime.settings().redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )


def json_console() -> None:
    """Celery's few console notices (printed from its signal handlers, "worker: Warm
    shutdown") as JSON lines, like every other line."""
    import celery.apps.worker as celery_worker

    celery_worker.safe_say = logs.say_json  # type: ignore[assignment]


class Observe(bootsteps.StartStopStep):
    """The worker's metrics endpoint and log set-up (see the module docstring)."""

    label = "Observe"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: Any = None

    def create(self, worker: Any) -> None:
        settings = runtime.settings()
        logs.hide(settings.secrets())
        if logs.json_mode():
            json_console()
        if settings.metrics_port:  # before the pool forks: its job process records here
            metrics.use_multiprocess("reviewbot-worker-metrics-")

    def start(self, worker: Any) -> None:
        port = runtime.settings().metrics_port
        if not port:
            return
        registry = metrics.scrape_registry(metrics.QueueDepth(_broker))
        try:
            self.server, _ = start_http_server(port, METRICS_HOST, registry=registry)
        except OSError as e:
            fail(
                f"cannot serve metrics on port {port} ({e.strerror or e}): set "
                "REVIEWBOT_METRICS_PORT to a free port, or 0 for none"
            )
        log.info("metrics on http://%s:%d/metrics", METRICS_HOST, port)

    def stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    terminate = stop
