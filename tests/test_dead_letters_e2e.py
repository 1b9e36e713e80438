"""Check runs always end (issue 11, item 7), against real parts.

The attempt counts and dead letters in the real Redis; then the worker subprocess
(``reviewbot worker``: prefork, its job process killed with SIGKILL as the kernel's
out-of-memory killer would), the GitHub stand-in over HTTP and the ``reviewbot
dead-letters`` command line: a job that kills its worker on every attempt ends in
the dead letters with a completed check run, and an operator's requeue posts it
once; a check run whose completion failed is completed by the retry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from conftest import DEDUPE_DB, ROOT, redis_url
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BROKER,
    HEAD,
    NUMBER,
    OPENED,
    REPO,
    REVIEWS_PATH,
    broker,
    deliver,
    pr,
    start_worker,
    webhook,
    worker_env,
)

from reviewbot.jobs.job import Job
from worker.deadletters import DeadLetterError, DeadLetters

KEY = Job("auto", REPO, 1, NUMBER, HEAD).key
CONFIG_PATH = rf"/repos/{REPO}/contents/\.github/reviewbot\.toml"


# --- the bookkeeping in Redis ---------------------------------------------------------------


@pytest.fixture
def letters() -> DeadLetters:
    """Dead letters under a key prefix of this test's own, deleted afterwards."""
    client = redis.Redis.from_url(redis_url(DEDUPE_DB))
    prefix = f"test-dead-letters-{uuid.uuid4().hex[:8]}"
    now = [1_700_000_000.0]
    yield DeadLetters(client, prefix=prefix, ttl=60, clock=lambda: now[0])
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_every_delivery_counts_until_the_job_finishes(letters) -> None:
    job, other = Job("auto", REPO, 1, NUMBER, HEAD), Job("auto", REPO, 1, NUMBER, "f" * 40)
    assert [letters.attempt(job) for _ in range(3)] == [1, 2, 3]
    assert letters.attempt(other) == 1 and letters.attempts(job) == 3
    assert 0 < letters.redis.ttl(f"{letters.key.rsplit(':', 1)[0]}:attempts:{job.key}") <= 60
    letters.finished(job)
    assert letters.attempts(job) == 0 and letters.attempts(other) == 1


def test_a_buried_job_is_listed_and_requeued_once_with_its_count_reset(letters) -> None:
    first = Job("auto", REPO, 1, NUMBER, HEAD)
    second = Job("ask", REPO, 1, NUMBER, "", comment_id=5, args="/ask", comment_type="issue")
    for _ in range(4):
        letters.attempt(first)
    letters.bury(first, 3, "its worker process died during every attempt")
    letters.clock = lambda: 1_700_000_060.0
    letters.bury(second, 6, "GitHub kept failing")

    assert [(d.job, d.attempts, d.reason) for d in letters.letters()] == [
        (first, 3, "its worker process died during every attempt"),
        (second, 6, "GitHub kept failing"),
    ]
    assert letters.is_dead(first) and letters.is_dead(second)

    queued: list[Job] = []
    assert letters.requeue(first.key, queued.append) == first
    assert queued == [first] and not letters.is_dead(first) and letters.attempts(first) == 0
    with pytest.raises(DeadLetterError, match="no dead letter"):
        letters.requeue(first.key, queued.append)  # not twice
    assert queued == [first]


def test_a_requeue_that_cannot_publish_keeps_the_dead_letter(letters) -> None:
    job = Job("auto", REPO, 1, NUMBER, HEAD)
    letters.bury(job, 3, "why")

    def broker_down(job: Job) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        letters.requeue(job.key, broker_down)
    assert [d.job for d in letters.letters()] == [job]


# --- end to end -----------------------------------------------------------------------------


def reviewbot(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``reviewbot`` command line, pointed at the end-to-end tests' Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env["REVIEWBOT_REDIS_URL"] = BROKER
    return subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_job_that_kills_its_worker_every_time_ends_in_the_dead_letters(
    pr, webhook, start_worker, broker
):
    worker = start_worker(REVIEWBOT_JOB_MAX_ATTEMPTS="3")
    held = pr.hold("GET", CONFIG_PATH)  # after the check run exists
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    killed = []
    for attempt in (1, 2, 3):
        assert held.reached.wait(120), worker.text()[-3000:]
        assert worker.text().count("started (attempt") == attempt
        # the next attempt's request is held too: set up before it can be made
        current, held = held, pr.hold("GET", CONFIG_PATH)
        killed.append(worker.kill_job_process())
        current.release.set()
    # the 4th delivery finds the attempts used up: it gives up instead of running
    worker.wait_for("finished: gave-up", 120)
    assert len(set(killed)) == 3  # a new job process each time
    assert "started (attempt 4 of 3)" in worker.text()
    assert len(pr.requests_to("GET", CONFIG_PATH)) == 3
    assert pr.reviews(REPO, NUMBER) == []
    (run,) = pr.check_runs(REPO)  # the run the first attempt created, reused by the others
    assert (run["status"], run["conclusion"], run["external_id"]) == (
        "completed",
        "failure",
        KEY,
    )
    assert run["output"]["title"] == "reviewbot gave up after 3 attempts"
    assert "its worker process died during every attempt" in run["output"]["summary"]

    listed = reviewbot("dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (letter,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (letter["key"], letter["attempts"]) == (KEY, 3)
    text = reviewbot("dead-letters", "list").stdout
    assert KEY in text and "3 attempts" in text

    # an operator requeues it; the worker is healthy now (nothing held): posted once
    held.release.set()  # the hold set up for a 4th attempt that never ran
    requeued = reviewbot("dead-letters", "requeue", KEY)
    assert requeued.returncode == 0, requeued.stderr
    assert f"requeued {KEY} on the reviews queue" in requeued.stdout
    worker.wait_for("finished: posted", 180)
    assert "started (attempt 1 of 3)" in worker.text().split("finished: gave-up")[1]
    assert len(pr.reviews(REPO, NUMBER)) == 1
    runs = pr.check_runs(REPO)
    assert [(r["status"], r["conclusion"]) for r in runs] == [
        ("completed", "failure"),  # a completed run is never reopened
        ("completed", "success"),
    ]
    assert reviewbot("dead-letters", "list", "--json").stdout == ""
    again = reviewbot("dead-letters", "requeue", KEY)
    assert again.returncode == 1 and "no dead letter" in again.stderr


def test_dead_letters_requeue_needs_keys_or_all():
    result = reviewbot("dead-letters", "requeue")
    assert result.returncode == 2 and "--all" in result.stderr


def test_dead_letters_without_redis_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env["REVIEWBOT_REDIS_URL"] = "redis://:hunter2@127.0.0.1:1/0"
    result = subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", "dead-letters", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("reviewbot: error: cannot use Redis at redis://:***@")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_check_run_whose_completion_failed_is_completed_by_the_retry(pr, webhook, start_worker):
    worker = start_worker()
    # every in-process attempt of the completion fails: the job is retried by the queue
    pr.fail("PATCH", rf"/repos/{REPO}/check-runs/\d+$", 503, times=3, headers={"Retry-After": "1"})
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: already-reviewed", 180)
    assert "retry in" in worker.text()
    assert len(pr.reviews(REPO, NUMBER)) == 1
    # one check run for the head, completed by the retry
    (run,) = pr.check_runs(REPO)
    assert (run["status"], run["conclusion"], run["output"]["title"]) == (
        "completed",
        "success",
        "Review posted",
    )
    assert len(pr.requests_to("POST", rf"/repos/{REPO}/check-runs$")) == 1
    assert len(pr.requests_to("POST", REVIEWS_PATH)) == 1
