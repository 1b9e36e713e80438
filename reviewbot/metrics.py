"""Prometheus metrics of the web server and the workers (``prometheus_client``).

Web (``GET /metrics`` of ``reviewbot serve``): deliveries by event and outcome, the
webhook's response time. Workers (``REVIEWBOT_METRICS_PORT`` of ``reviewbot worker``):
jobs by kind and outcome, seconds per stage of a review, generated tokens and tokens
per second, retries, dead letters, model load time. Both: the jobs waiting in each
queue (``LLEN`` in Redis, read at scrape time).

Both services run several processes (gunicorn's workers; Celery's parent and its job
process), so each keeps prometheus_client's multiprocess files in a fresh directory
(:func:`use_multiprocess`, before it forks) and its scrape endpoint adds them up.
The metric objects are made on first use, in the process that records them.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from reviewbot.settings.defaults import (
    MODEL_LOAD_SECONDS_BUCKETS,
    QUEUE_INTERACTIVE,
    QUEUE_REVIEWS,
    RESPONSE_SECONDS_BUCKETS,
    STAGE_SECONDS_BUCKETS,
    TOKENS_PER_SECOND_BUCKETS,
)

log = logging.getLogger(__name__)

#: prometheus_client's multiprocess directory variable.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The scrape answer's content type.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: The queues whose depth is reported, in the order workers drain them.
QUEUES: tuple[str, ...] = (QUEUE_INTERACTIVE, QUEUE_REVIEWS)
#: kombu's Redis transport keeps a queue's prioritised messages in lists named
#: ``queue + "\\x06\\x16" + step`` beside the queue's own list.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def use_multiprocess(prefix: str) -> Path:
    """Keep this process's metrics, and those of the processes it forks, in a fresh
    multiprocess directory (removed when this process exits; those of processes that
    were killed are removed by the next one); call before forking and before any
    metric is made. The directory."""
    owner = os.getpid()
    _remove_orphans(prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner}-"))
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client picks its value class when imported: pick again.
    values.ValueClass = values.get_value_class()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked child that exits through Python
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def _remove_orphans(prefix: str) -> None:
    """Remove the multiprocess directories ``prefix`` left by processes now gone."""
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def multiprocess_dir() -> str | None:
    """The multiprocess directory of this process, if it uses one."""
    return os.environ.get(MULTIPROC_ENV) or None


def mark_process_dead(pid: int) -> None:
    """A process that recorded metrics is gone (gunicorn's ``child_exit`` hook)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


def scrape_registry(*extra: Any) -> CollectorRegistry:
    """What a scrape reports: every process's metrics (multiprocess mode) or this
    process's, plus the ``extra`` collectors."""
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry = _Joined(REGISTRY)
    for collector in extra:
        registry.register(collector)
    return registry


def exposition(*extra: Any) -> bytes:
    """The text exposition of :func:`scrape_registry`."""
    return generate_latest(scrape_registry(*extra))


class _Joined(CollectorRegistry):
    """A registry that reports another one's metrics too (the process's default one)."""

    def __init__(self, base: CollectorRegistry) -> None:
        super().__init__()
        self.base = base

    def collect(self) -> Iterator[Metric]:
        yield from self.base.collect()
        yield from super().collect()


class QueueDepth:
    """``reviewbot_queue_depth{queue}``: the jobs waiting in each queue, read from the
    broker (Redis ``LLEN``) at each scrape; nothing when Redis does not answer."""

    def __init__(self, client: Callable[[], redis.Redis], queues: tuple[str, ...] = QUEUES):
        self.client = client
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        names = [[q, *(f"{q}{_PRIORITY_SEP}{p}" for p in _PRIORITY_STEPS)] for q in self.queues]
        try:
            pipe = self.client().pipeline(transaction=False)
            for lists in names:
                for name in lists:
                    pipe.llen(name)
            counts = iter(pipe.execute())
        except redis.RedisError as e:
            log.warning("queue depth: redis unavailable: %s", e)
            return
        gauge = GaugeMetricFamily(
            "reviewbot_queue_depth", "Jobs waiting in each queue.", labels=["queue"]
        )
        for queue, lists in zip(self.queues, names, strict=True):
            gauge.add_metric([queue], float(sum(next(counts) for _ in lists)))
        yield gauge


@dataclass(frozen=True)
class WebMetrics:
    """The webhook server's metrics."""

    deliveries: Counter
    response_seconds: Histogram

    def delivery(self, event: str, outcome: str, seconds: float) -> None:
        self.deliveries.labels(event=event, outcome=outcome).inc()
        self.response_seconds.observe(seconds)


@cache
def web() -> WebMetrics:
    """The web metrics of this process (made on first use)."""
    return WebMetrics(
        deliveries=Counter(
            "reviewbot_webhook_deliveries",
            "Webhook deliveries by event and outcome.",
            ["event", "outcome"],
        ),
        response_seconds=Histogram(
            "reviewbot_webhook_response_seconds",
            "Seconds from a webhook delivery's request to its answer.",
            buckets=RESPONSE_SECONDS_BUCKETS,
        ),
    )


#: A webhook answer's outcome label by its status; errors are named by their code.
_ANSWERED = ("queued", "duplicate", "ignored", "pong")


def delivery_outcome(body: Mapping[str, Any], code: int) -> str:
    """The ``outcome`` label of a webhook answer: queued, duplicate, ignored, pong,
    over-cap (429), rejected (other 4xx) or unavailable (5xx)."""
    status = body.get("status")
    if status in _ANSWERED:
        return str(status)
    if code == 429:
        return "over-cap"
    return "rejected" if code < 500 else "unavailable"


@dataclass(frozen=True)
class WorkerMetrics:
    """A worker's metrics (recorded in its job process)."""

    jobs: Counter
    stage_seconds: Histogram
    generated_tokens: Counter
    prompt_tokens: Counter
    tokens_per_second: Histogram
    retries: Counter
    dead_letters: Counter
    model_load_seconds: Histogram

    def job(self, kind: str, outcome: str, timings: Mapping[str, float] | None = None) -> None:
        """A job ended with ``outcome``; ``timings``: seconds per stage."""
        self.jobs.labels(kind=kind, outcome=outcome).inc()
        for stage, seconds in (timings or {}).items():
            self.stage_seconds.labels(stage=stage).observe(seconds)

    def generated(self, prompt_tokens: int, new_tokens: int, seconds: float) -> None:
        """One generate call."""
        self.prompt_tokens.inc(prompt_tokens)
        self.generated_tokens.inc(new_tokens)
        if seconds > 0 and new_tokens > 0:
            self.tokens_per_second.observe(new_tokens / seconds)


@cache
def worker() -> WorkerMetrics:
    """The worker metrics of this process (made on first use)."""
    return WorkerMetrics(
        jobs=Counter("reviewbot_jobs", "Jobs ended, by kind and outcome.", ["kind", "outcome"]),
        stage_seconds=Histogram(
            "reviewbot_job_stage_seconds",
            "Seconds a review job spent per stage (fetch, plan, model, generate, post).",
            ["stage"],
            buckets=STAGE_SECONDS_BUCKETS,
        ),
        generated_tokens=Counter("reviewbot_generated_tokens", "Tokens the model generated."),
        prompt_tokens=Counter("reviewbot_prompt_tokens", "Prompt tokens fed to generation."),
        tokens_per_second=Histogram(
            "reviewbot_generation_tokens_per_second",
            "Generated tokens per second, per generate call.",
            buckets=TOKENS_PER_SECOND_BUCKETS,
        ),
        retries=Counter(
            "reviewbot_job_retries",
            "Jobs put back on the queue for later: reason github (a transient GitHub "
            "error) or token-budget (the installation's budget is used up).",
            ["reason"],
        ),
        dead_letters=Counter(
            "reviewbot_dead_letters", "Jobs given up and moved to the dead letters.", ["kind"]
        ),
        model_load_seconds=Histogram(
            "reviewbot_model_load_seconds",
            "Seconds a job process took to load the model and its adapters.",
            buckets=MODEL_LOAD_SECONDS_BUCKETS,
        ),
    )
