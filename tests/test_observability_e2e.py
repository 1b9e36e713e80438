"""Metrics and logs (issue 13, item 5), through the real parts.

A signed webhook → ``reviewbot serve`` (gunicorn, two processes) → Redis → ``reviewbot
worker`` (prefork) running a tiny 4-bit model → PyGithub to the GitHub stand-in; then
the web's ``/metrics`` and the worker's metrics port are scraped, and both logs, in
``REVIEWBOT_LOG_FORMAT=json``, are read line by line. And Flower, started beside a
worker against the same broker, sees it through its HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ROOT
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from prometheus_client.parser import text_string_to_metric_families
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BROKER,
    NUMBER,
    OPENED,
    REPO,
    SECRET,
    broker,
    deliver,
    pr,
    start_worker,
    worker_env,
)

REVIEWBOT = Path(sys.executable).parent / "reviewbot"
CELERY = Path(sys.executable).parent / "celery"
HEAD = OPENED["pull_request"]["head"]["sha"]
KEY = f"auto:{REPO}:{NUMBER}:{HEAD}:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except (requests.RequestException, OSError):
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape: (sample name, sorted labels) → value."""
    text = requests.get(url, timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def json_lines(path: Path) -> list[dict]:
    """Every line of the log, each a JSON object (the assertion names a line that is not)."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict) and {"time", "level", "message"} <= entry.keys()
        entries.append(entry)
    return entries


@pytest.fixture
def serve(broker, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``reviewbot serve`` with two gunicorn processes, logging JSON."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(
        REVIEWBOT_WEBHOOK_SECRET=SECRET, REVIEWBOT_REDIS_URL=BROKER, REVIEWBOT_LOG_FORMAT="json"
    )
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(REVIEWBOT), "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: (
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
                or proc.poll() is not None
            ),
            60,
            "reviewbot serve",
        )
        assert proc.poll() is None, log.read_text()
        yield port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_one_review_moves_the_metrics_and_every_log_line_is_json(pr, serve, start_worker):
    web_port, web_log = serve
    metrics_port = free_port()
    worker = start_worker(REVIEWBOT_LOG_FORMAT="json", REVIEWBOT_METRICS_PORT=str(metrics_port))
    delivery = str(uuid.uuid4())

    r = deliver(f"http://127.0.0.1:{web_port}/webhook", "pull_request", OPENED, delivery)
    assert r.status_code == 202, r.text
    worker.wait_for("finished: posted", 180)
    assert len(pr.reviews(REPO, NUMBER)) == 1

    # the web: one delivery, queued, answered once (both gunicorn processes added up)
    web = samples(f"http://127.0.0.1:{web_port}/metrics")
    labels = (("event", "pull_request"), ("outcome", "queued"))
    assert web[("reviewbot_webhook_deliveries_total", labels)] == 1.0
    assert web[("reviewbot_webhook_response_seconds_count", ())] == 1.0
    assert web[("reviewbot_queue_depth", (("queue", "reviews"),))] == 0.0
    assert web[("reviewbot_queue_depth", (("queue", "interactive"),))] == 0.0

    # the worker: the job posted, each stage timed once, tokens generated, one model load
    seen = samples(f"http://127.0.0.1:{metrics_port}/metrics")
    assert seen[("reviewbot_jobs_total", (("kind", "auto"), ("outcome", "posted")))] == 1.0
    for stage in ("fetch", "plan", "model", "generate", "post"):
        assert seen[("reviewbot_job_stage_seconds_count", (("stage", stage),))] == 1.0, stage
        assert seen[("reviewbot_job_stage_seconds_sum", (("stage", stage),))] >= 0.0
    assert seen[("reviewbot_job_stage_seconds_sum", (("stage", "generate"),))] > 0.0
    assert seen[("reviewbot_generated_tokens_total", ())] > 0
    assert seen[("reviewbot_prompt_tokens_total", ())] > 0
    assert seen[("reviewbot_generation_tokens_per_second_count", ())] >= 1
    assert seen[("reviewbot_model_load_seconds_count", ())] == 1.0
    assert seen[("reviewbot_queue_depth", (("queue", "reviews"),))] == 0.0
    assert not any(name.startswith("reviewbot_job_retries") and v for (name, _), v in seen.items())

    # the worker's log, from its start to its shutdown: JSON lines; the job's carry its key
    worker.stop()
    entries = json_lines(worker.log)
    messages = [e["message"] for e in entries]
    assert any(m.endswith(" ready.") for m in messages)
    assert any(m == "worker: Warm shutdown (MainProcess)" for m in messages)
    first = next(i for i, m in enumerate(messages) if "started (attempt 1 of" in m)
    last = next(i for i, m in enumerate(messages) if m.endswith("finished: posted"))
    job_lines = [e for e in entries[first : last + 1] if e.get("process") != "MainProcess"]
    assert len(job_lines) >= 3
    for e in job_lines:
        assert (e.get("job"), e.get("delivery")) == (KEY, delivery), e
    assert any(re.search(r"timings: fetch=", e["message"]) for e in job_lines)
    secret_free = worker.log.read_text()
    assert "PRIVATE KEY-----" not in secret_free and SECRET not in secret_free

    # the web's log (gunicorn's own lines too): JSON; the delivery's lines carry its id
    web_entries = json_lines(web_log)
    assert any(e["logger"] == "gunicorn.error" for e in web_entries)
    assert any(e["logger"] == "gunicorn.access" and "POST /webhook" in e["message"]
               for e in web_entries)  # fmt: skip
    (queued,) = [e for e in web_entries if "queued job" in e["message"]]
    assert (queued.get("delivery"), queued.get("job")) == (delivery, KEY)
    assert SECRET not in web_log.read_text()


def test_flower_sees_the_worker_through_its_http_api(worker_env, start_worker, tmp_path):
    worker = start_worker()
    name = re.search(r"(\S+@\S+) ready\.", worker.text()).group(1)
    port = free_port()
    env = {**worker_env, "FLOWER_UNAUTHENTICATED_API": "true"}
    log = tmp_path / "flower.log"
    with open(log, "w") as out:
        flower = subprocess.Popen(
            [str(CELERY), "-A", "worker.app", f"--broker={BROKER}", "flower",
             f"--port={port}", "--address=127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def listed() -> dict | None:
            assert flower.poll() is None, log.read_text()
            answer = requests.get(
                f"http://127.0.0.1:{port}/api/workers", params={"refresh": "1"}, timeout=10
            )
            workers = answer.json() if answer.ok else {}
            return workers.get(name)

        info = wait_until(listed, 90, f"Flower to list {name}")
        assert info["stats"]["pool"]["max-concurrency"] == 1
        queues = [q["name"] for q in info["active_queues"]]
        assert queues == ["interactive", "reviews", "outcomes"]
        assert {"worker.tasks.run_job", "worker.tasks.refresh_outcomes"} <= set(info["registered"])
    finally:
        flower.send_signal(signal.SIGTERM)
        try:
            flower.wait(timeout=20)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait()
