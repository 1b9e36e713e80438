"""Log lines and metrics, in process: the JSON and text formats, the delivery/job
context, masked secrets, the new settings, the web's ``/metrics`` and the queue depths
read from a real Redis."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import DEDUPE_DB, E2E_BROKER_DB, redis_url
from prometheus_client.parser import text_string_to_metric_families

from reviewbot import logs, metrics
from reviewbot.github.events import sign
from reviewbot.server.app import create_app
from reviewbot.settings.defaults import DEFAULT_METRICS_PORT, MODEL_LOAD_TIMEOUT
from reviewbot.settings.server import Settings, SettingsError, log_format

SECRET = "metrics-test-webhook-secret"


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    rec = logging.LogRecord("reviewbot.test", logging.INFO, __file__, 1, message, args, None)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            rec.exc_info = sys.exc_info()
    logs.ContextFilter().filter(rec)
    return rec


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_secrets", set())


def test_a_json_line_carries_the_job_and_delivery_of_its_context_only(no_secrets) -> None:
    fmt = logs.JsonFormatter()
    with logs.context(job="auto:o/r:1:abc:", delivery="d-1"):
        inside = json.loads(fmt.format(record("job %s started", "x")))
        with logs.context(job="ask:o/r:1::7"):  # nested: the inner job, the outer delivery
            nested = json.loads(fmt.format(record("nested")))
    outside = json.loads(fmt.format(record("after", exc=True)))
    assert inside["message"] == "job x started"
    assert (inside["job"], inside["delivery"]) == ("auto:o/r:1:abc:", "d-1")
    assert (nested["job"], nested["delivery"]) == ("ask:o/r:1::7", "d-1")
    assert "job" not in outside and "delivery" not in outside
    assert outside["level"] == "INFO" and outside["logger"] == "reviewbot.test"
    assert outside["exception"].endswith("ValueError: boom")
    assert outside["time"].endswith("Z") and {"process", "pid"} <= outside.keys()


def test_a_delivery_id_is_kept_short(no_secrets) -> None:
    with logs.context(delivery="x" * 5000):
        line = json.loads(logs.JsonFormatter().format(record("m")))
    assert line["delivery"] == "x" * 100


def test_secrets_are_masked_in_both_formats_tracebacks_included(no_secrets) -> None:
    settings = Settings(
        webhook_secrets=("hook-secret-one", "abc"),
        redis_url="redis://:redis-password-9@localhost:6379/0",
    )
    logs.hide(settings.secrets())
    assert "redis-password-9" in settings.secrets()
    rec = record("secrets: %s %s", "hook-secret-one", "redis://:redis-password-9@h/0", exc=True)
    rec.exc_info = None
    rec.exc_text = "Traceback: hook-secret-one"
    for formatter in (logs.JsonFormatter(), logs.TextFormatter(logs.SERVICE_TEXT)):
        text = formatter.format(rec)
        assert "hook-secret-one" not in text and "redis-password-9" not in text
        assert text.count("***") >= 3
    # a value too short to mask without masking ordinary words is left alone
    assert logs.mask("abc") == "abc"
    assert json.loads(logs.json_line("hook-secret-one"))["message"] == "***"


def test_configure_switches_the_one_handler_it_owns(no_secrets) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        assert logs.configure(logging.INFO, environ={"REVIEWBOT_LOG_FORMAT": "json"}) == "json"
        ours = [h for h in root.handlers if getattr(h, "_reviewbot", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.JsonFormatter)
        assert logs.configure(environ={}) == "text"
        assert [h for h in root.handlers if getattr(h, "_reviewbot", False)] == ours
        assert isinstance(ours[0].formatter, logs.TextFormatter)
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)


def test_the_new_settings_are_validated() -> None:
    s = Settings.from_env({})
    assert (s.log_format, s.metrics_port, s.model_load_timeout) == (
        "text",
        DEFAULT_METRICS_PORT,
        MODEL_LOAD_TIMEOUT,
    )
    s = Settings.from_env(
        {
            "REVIEWBOT_LOG_FORMAT": "json",
            "REVIEWBOT_METRICS_PORT": "0",
            "REVIEWBOT_MODEL_LOAD_TIMEOUT": "60",
        }
    )
    assert (s.log_format, s.metrics_port, s.model_load_timeout) == ("json", 0, 60)
    assert "metrics_port=0" in repr(s) and "log_format='json'" in repr(s)
    with pytest.raises(SettingsError) as e:
        Settings.from_env(
            {
                "REVIEWBOT_LOG_FORMAT": "xml",
                "REVIEWBOT_METRICS_PORT": "70000",
                "REVIEWBOT_MODEL_LOAD_TIMEOUT": "0",
            }
        )
    assert e.value.problems == [
        "REVIEWBOT_LOG_FORMAT must be one of text, json (got 'xml')",
        "REVIEWBOT_METRICS_PORT must be a port number, or 0 for no metrics (got '70000')",
        "REVIEWBOT_MODEL_LOAD_TIMEOUT must be a positive integer (got '0')",
    ]
    assert log_format({"REVIEWBOT_LOG_FORMAT": "xml"}) == "text"  # reported by Settings
    assert log_format({"REVIEWBOT_LOG_FORMAT": " json "}) == "json"


def test_delivery_outcomes() -> None:
    outcome = metrics.delivery_outcome
    assert outcome({"status": "queued"}, 202) == "queued"
    assert outcome({"status": "duplicate"}, 200) == "duplicate"
    assert outcome({"status": "ignored", "reason": "rate limited"}, 200) == "ignored"
    assert outcome({"status": "pong"}, 200) == "pong"
    assert outcome({"status": "error"}, 401) == "rejected"
    assert outcome({"status": "error"}, 413) == "rejected"
    assert outcome({"status": "error"}, 429) == "over-cap"
    assert outcome({"status": "error"}, 503) == "unavailable"


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url(E2E_BROKER_DB))
    r.flushdb()
    yield r
    r.flushdb()


def test_queue_depth_is_read_from_redis_at_each_scrape(broker: redis.Redis) -> None:
    depth = metrics.QueueDepth(lambda: broker)
    broker.rpush("reviews", "a", "b")
    broker.rpush("reviews\x06\x166", "c")  # a prioritised message of the same queue
    broker.rpush("interactive", "d")
    (family,) = depth.collect()
    assert {s.labels["queue"]: s.value for s in family.samples} == {
        "interactive": 1.0,
        "reviews": 3.0,
    }
    broker.delete("reviews")
    (family,) = depth.collect()
    assert {s.labels["queue"]: s.value for s in family.samples}["reviews"] == 1.0
    down = metrics.QueueDepth(lambda: redis.Redis.from_url("redis://127.0.0.1:1/0"))
    assert list(down.collect()) == []


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_web_app_counts_deliveries_by_known_event_and_serves_metrics(
    broker: redis.Redis,
) -> None:
    dedupe = redis.Redis.from_url(redis_url(DEDUPE_DB))
    settings = Settings(webhook_secrets=(SECRET,), redis_url=redis_url(E2E_BROKER_DB))
    app = create_app(
        settings, enqueue=lambda job: None, redis_client=dedupe, dedupe_prefix=uuid.uuid4().hex
    )
    client = app.test_client()
    broker.rpush("reviews", "waiting")

    def deliveries() -> dict[tuple[str, tuple], float]:
        answer = client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        return scrape(answer.get_data(as_text=True))

    before = deliveries()
    body = b'{"zen": "hi", "hook_id": 1}'
    for event in ("ping", "made-up-event-" + uuid.uuid4().hex):
        client.post(
            "/webhook",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign(body, SECRET),
            },
        )
    client.post("/webhook", data=body, headers={"X-GitHub-Event": "pull_request"})  # unsigned
    after = deliveries()

    def moved(event: str, outcome: str) -> float:
        key = ("reviewbot_webhook_deliveries_total", (("event", event), ("outcome", outcome)))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("ping", "pong") == 1
    assert moved("other", "ignored") == 1  # an unknown event is ignored, labelled "other"
    assert moved("pull_request", "rejected") == 1
    count = ("reviewbot_webhook_response_seconds_count", ())
    assert after[count] - before.get(count, 0.0) == 3
    assert after[("reviewbot_queue_depth", (("queue", "reviews"),))] == 1.0
    assert not any("made-up-event" in str(labels) for _, labels in after)
    dedupe.close()


def test_the_multiprocess_directories_of_killed_processes_are_swept() -> None:
    """What a worker or server killed with SIGKILL left is removed by the next one."""
    prefix = f"reviewbot-test-metrics-{uuid.uuid4().hex[:8]}-"
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid runs no process any more
    root = Path(tempfile.gettempdir())
    orphan = root / f"{prefix}{dead.pid}-abc"
    alive = root / f"{prefix}{os.getpid()}-def"
    orphan.mkdir()
    alive.mkdir()
    try:
        metrics._remove_orphans(prefix)
        assert not orphan.exists() and alive.exists()
    finally:
        alive.rmdir()
