"""The GitHub App end to end, against real parts.

Signed real webhook payloads → the Flask app over HTTP → real Redis → a real
Celery worker subprocess running a tiny 4-bit model → PyGithub over HTTP to
the GitHub stand-in, which records the one review that must come out.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery
from celery_worker import CeleryWorker
from conftest import E2E_BROKER_DB, ROOT, WEBHOOKS, redis_url
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from tinymodel import overfit_tiny_model
from werkzeug.serving import make_server

from reviewbot.github.events import sign
from reviewbot.jobs.job import Job
from reviewbot.server.app import create_app
from reviewbot.settings.defaults import QUEUE_REVIEWS, TASK_RUN_JOB
from reviewbot.settings.server import Settings

HOOKS = WEBHOOKS
SAMPLE_DIFF = (ROOT / "examples" / "sample.diff").read_text()
SECRET = "e2e-webhook-secret"
BROKER = redis_url(E2E_BROKER_DB)
CELERY = Path(sys.executable).parent / "celery"


def payload(name: str) -> dict:
    return json.loads((HOOKS / name).read_text())


OPENED = payload("pull_request.opened.json")
REPO = OPENED["repository"]["full_name"]
NUMBER = OPENED["number"]
HEAD = OPENED["pull_request"]["head"]["sha"]
BASE = OPENED["pull_request"]["base"]["sha"]
REVIEWS_PATH = rf"/repos/{REPO}/pulls/{NUMBER}/reviews$"


class Worker(CeleryWorker):
    """The worker subprocess, started and ready (its model loaded: Celery's "… ready.")."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(env, log)
        self.wait_for(" ready.", 90)


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    yield r
    r.flushdb()


@pytest.fixture
def pr(github: GitHubStandIn) -> GitHubStandIn:
    github.add_repo(REPO)
    github.add_pull(REPO, NUMBER, SAMPLE_DIFF, HEAD, BASE)
    return github


@pytest.fixture
def worker_env(pr: GitHubStandIn, app_key: str, tiny_model_dir: Path, broker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(
        REVIEWBOT_REDIS_URL=BROKER,
        REVIEWBOT_APP_ID=str(APP_ID),
        REVIEWBOT_PRIVATE_KEY=app_key,
        REVIEWBOT_GITHUB_API_URL=pr.url,
        REVIEWBOT_MODEL=str(tiny_model_dir),
        REVIEWBOT_QUANTIZE="4bit",
        REVIEWBOT_MAX_NEW_TOKENS="10",
        # the tiny random model is unsure of its findings (~0.6): repositories that name
        # no profile post them (the profiles themselves: test_confidence_e2e.py)
        REVIEWBOT_PROFILE="assertive",
        HF_HUB_OFFLINE="1",
    )
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path) -> Iterator:
    started: list[Worker] = []

    def start(**extra: str) -> Worker:
        w = Worker({**worker_env, **extra}, tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def webhook(broker) -> Iterator[str]:
    """The real Flask app over HTTP on loopback, enqueueing through Celery into Redis."""
    app = create_app(Settings(webhook_secrets=(SECRET,), redis_url=BROKER))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhook"
    server.shutdown()
    thread.join(5)


def deliver(url: str, event: str, body: dict, delivery: str | None = None) -> requests.Response:
    data = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(data, SECRET),
    }
    return requests.post(url, data=data, headers=headers, timeout=10)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def diff_lines() -> dict[str, set[int]]:
    from reviewbot.review.diffplan import plan_diff

    lines: dict[str, set[int]] = {}
    for u in plan_diff(SAMPLE_DIFF).units:
        lines.setdefault(u.path, set()).update(range(u.start_line, u.end_line + 1))
    return lines


def test_opened_pull_request_gets_exactly_one_review(pr, webhook, start_worker):
    worker = start_worker()
    r = deliver(webhook, "pull_request", OPENED)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    worker.wait_for("finished: posted", 180)

    reviews = pr.reviews(REPO, NUMBER)
    assert len(reviews) == 1
    review = reviews[0]
    assert review["commit_id"] == HEAD
    assert f"<!-- reviewbot:auto:{HEAD}:" in review["body"]
    assert "poetry.lock" in review["body"]  # skipped files are listed, not dropped
    inside = diff_lines()
    assert review["comments"], "the tiny model's critiques should survive as comments"
    for c in review["comments"]:
        assert c["line"] in inside[c["path"]]
        assert "<!-- reviewbot:finding:" in c["body"]
    runs = pr.check_runs(REPO)
    assert [(run["status"], run["conclusion"]) for run in runs] == [("completed", "success")]

    # the same delivery again, and a new delivery for the same head: nothing new
    again = deliver(
        webhook, "pull_request", OPENED, delivery=r.request.headers["X-GitHub-Delivery"]
    )
    assert again.json()["status"] == "duplicate"
    reopened = dict(OPENED, action="reopened")
    assert deliver(webhook, "pull_request", reopened).json()["status"] == "duplicate"
    # a marker job queued after them: once the worker (one process, first in first out)
    # has finished it, it would have run anything the duplicates had queued
    send_job(Job("auto", REPO, 1, NUMBER, HEAD))
    worker.wait_for("finished: already-reviewed", 180)
    assert len(re.findall(r"job \S+ started", worker.text())) == 2
    assert len(pr.reviews(REPO, NUMBER)) == 1


def send_job(job: Job, queue: str = QUEUE_REVIEWS) -> None:
    """Put ``job`` straight onto the broker, as the webhook would (past its dedupe)."""
    Celery(broker=BROKER).send_task(
        TASK_RUN_JOB, args=[job.to_dict()], queue=queue, ignore_result=True
    )


def test_same_head_enqueued_twice_posts_one_review(pr, start_worker, broker):
    """Bypassing the webhook's dedupe: the worker's marker check still posts once."""
    worker = start_worker()
    for _ in range(2):
        send_job(Job("auto", REPO, 1, NUMBER, HEAD))
    worker.wait_for("finished: already-reviewed", 180)
    assert worker.text().count("finished: posted") == 1
    assert len(pr.reviews(REPO, NUMBER)) == 1


def test_github_5xx_is_retried_and_one_review_posted(pr, webhook, start_worker):
    worker = start_worker()
    # more 5xx than the client's in-process attempts: the Celery task retries
    pr.fail("POST", REVIEWS_PATH, 503, times=4, headers={"Retry-After": "1"})
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: posted", 180)
    assert "retry in" in worker.text()
    assert len(pr.requests_to("POST", REVIEWS_PATH)) == 5
    assert len(pr.reviews(REPO, NUMBER)) == 1
    runs = pr.check_runs(REPO)
    assert runs[-1]["conclusion"] == "success"
    assert all(run["status"] == "completed" for run in runs)


def test_a_comment_github_rejects_with_422_moves_into_the_body(pr, webhook, start_worker):
    worker = start_worker()
    pr.fail("POST", REVIEWS_PATH, 422, times=1)
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: posted", 180)
    reviews = pr.reviews(REPO, NUMBER)
    assert len(reviews) == 1
    assert reviews[0]["comments"] == []
    assert "<!-- reviewbot:finding:" in reviews[0]["body"]


def test_invalid_repo_config_fails_the_check_run_with_a_clear_message(pr, webhook, start_worker):
    pr.set_file(REPO, "main", ".github/reviewbot.toml", "max_comments = 'many'\n")
    worker = start_worker()
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: failed", 180)
    assert pr.reviews(REPO, NUMBER) == []
    (run,) = pr.check_runs(REPO)
    assert run["conclusion"] == "failure"
    assert "max_comments" in run["output"]["summary"]


@pytest.mark.parametrize("kill_at", ["before-posting", "after-posting"])
def test_worker_killed_mid_job_is_redelivered_and_posts_once(pr, webhook, start_worker, kill_at):
    """SIGKILL the worker (its parent; the job process dies with it) while GitHub holds a
    response; a new worker finishes the job and completes the check run left in progress.

    The visibility timeout must outlast the hard time limit: a short budget keeps it short.
    """
    short = {"REVIEWBOT_JOB_TIME_BUDGET": "30", "REVIEWBOT_VISIBILITY_TIMEOUT": "41"}
    if kill_at == "before-posting":
        held = pr.hold("POST", rf"/repos/{REPO}/check-runs$")
    else:
        held = pr.hold("POST", REVIEWS_PATH)
    first = start_worker(**short)
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    assert held.reached.wait(180), first.text()[-2000:]
    first.kill()
    held.release.set()
    assert len(pr.reviews(REPO, NUMBER)) == (1 if kill_at == "after-posting" else 0)
    assert [run["status"] for run in pr.check_runs(REPO)] == ["in_progress"]

    second = start_worker(**short)
    expected = "finished: already-reviewed" if kill_at == "after-posting" else "finished: posted"
    second.wait_for(expected, 180)
    assert len(pr.reviews(REPO, NUMBER)) == 1
    # the run the killed attempt left in progress is the one completed: one per job
    assert [(run["status"], run["conclusion"]) for run in pr.check_runs(REPO)] == [
        ("completed", "success")
    ]


@pytest.mark.parametrize("drafts", [False, True])
def test_draft_pull_requests_follow_the_repo_config(github, webhook, start_worker, drafts):
    github.add_repo(
        REPO, files_on_default={".github/reviewbot.toml": f"drafts = {str(drafts).lower()}\n"}
    )
    github.add_pull(REPO, NUMBER, SAMPLE_DIFF, HEAD, BASE, draft=True)
    worker = start_worker()
    draft = json.loads(json.dumps(OPENED))
    draft["pull_request"]["draft"] = True
    assert deliver(webhook, "pull_request", draft).status_code == 202
    worker.wait_for("finished: posted" if drafts else "finished: skipped", 180)
    assert len(github.reviews(REPO, NUMBER)) == (1 if drafts else 0)
    (run,) = github.check_runs(REPO)
    assert run["conclusion"] == ("success" if drafts else "skipped")


#: Two small files (their critique prompts fit the tiny model's 256-token context).
SMALL_FILES = {
    "app/cache.py": (
        "diff --git a/app/cache.py b/app/cache.py\nindex 1a2b3c4..5d6e7f8 100644\n"
        "--- a/app/cache.py\n+++ b/app/cache.py\n@@ -1,2 +1,2 @@\n class Cache:\n"
        "-    items = []\n+    items = {}\n"
    ),
    "app/users.py": (
        "diff --git a/app/users.py b/app/users.py\nindex 2b3c4d5..6e7f8a9 100644\n"
        "--- a/app/users.py\n+++ b/app/users.py\n@@ -1,2 +1,2 @@\n def find(db, name):\n"
        '-    return db.get(name)\n+    return db.run(f"SELECT {name}")\n'
    ),
}
CRITIQUES = {
    "app/cache.py": "The mutable default is shared between all caches.",
    "app/users.py": "Pass the name as a query parameter.",
}


@pytest.fixture
def critique_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A tiny model trained to answer each unit's critique prompt with CRITIQUES[path]."""
    from reviewbot.review.diffplan import plan_diff
    from reviewbot.review.pipeline import critique_prompts
    from reviewbot.review.prompts import Renderer

    units = plan_diff("".join(SMALL_FILES.values())).units
    prompts = critique_prompts(units, Renderer("alpaca"))  # as the worker renders them
    pairs = [(p, CRITIQUES[u.path]) for p, u in zip(prompts, units, strict=True)]
    assert len(pairs) == 2
    return overfit_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("critique"), pairs)


def test_synchronize_reviews_only_what_changed_since_the_last_reviewed_head(
    pr, webhook, start_worker, critique_model
):
    first_head = "1" * 40
    pr.add_pull(REPO, NUMBER, SMALL_FILES["app/cache.py"], first_head, BASE)
    worker = start_worker(REVIEWBOT_MODEL=str(critique_model), REVIEWBOT_MAX_NEW_TOKENS="32")
    opened = json.loads(json.dumps(OPENED))
    opened["pull_request"]["head"]["sha"] = first_head
    assert deliver(webhook, "pull_request", opened).status_code == 202
    worker.wait_for("finished: posted", 180)

    # a push adds the users.py change; cache.py is as it was reviewed
    sync = payload("pull_request.synchronize.json")
    sync["before"] = first_head
    pr.add_pull(REPO, NUMBER, "".join(SMALL_FILES.values()), sync["after"], BASE)
    pr.set_compare(REPO, first_head, sync["after"], SMALL_FILES["app/users.py"])
    assert deliver(webhook, "pull_request", sync).status_code == 202
    worker.wait_for("job incremental:", 180)
    worker.wait_for("finished:", 180, count=2)
    assert "1 unit(s) unchanged since 1111111" in worker.text()
    assert worker.text().count("finished: posted") == 2

    first, second = pr.reviews(REPO, NUMBER)
    assert f"<!-- reviewbot:auto:{first_head}:" in first["body"]
    assert [(c["path"], c["body"].split("\n")[0]) for c in first["comments"]] == [
        ("app/cache.py", CRITIQUES["app/cache.py"])
    ]
    # the incremental review critiques users.py only: cache.py was reviewed at first_head
    assert f"<!-- reviewbot:incremental:{sync['after']}:" in second["body"]
    assert [(c["path"], c["body"].split("\n")[0]) for c in second["comments"]] == [
        ("app/users.py", CRITIQUES["app/users.py"])
    ]
    # no finding was posted twice
    bodies = [c["body"] for r in (first, second) for c in r["comments"]]
    markers = [b[b.index("<!-- reviewbot:finding:") :] for b in bodies]
    assert len(markers) == len(set(markers))
