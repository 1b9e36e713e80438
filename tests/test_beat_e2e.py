"""The worker records what it posts, and ``reviewbot beat`` refreshes the outcomes.

A real ``reviewbot worker`` (tiny 4-bit model) reviews a pull request served by the
GitHub stand-in and records its findings in the findings database (a SQLite file); a
maintainer reacts 👎 to one of them; a real ``reviewbot beat`` process (Celery beat,
every second here) queues the outcome refresh, which the worker runs on its
``outcomes`` queue: the finding is labelled ``rejected`` with the maintainer's name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery_worker import CeleryWorker
from conftest import E2E_BROKER_DB, ROOT, redis_url
from github_standin import (  # noqa: F401  (fixtures: github, app_key)
    APP_ID,
    GitHubStandIn,
    app_key_fixture,
    github_fixture,
)
from test_app_e2e import BASE, HEAD, NUMBER, REPO, SAMPLE_DIFF, send_job

from reviewbot.github.markers import parse_markers
from reviewbot.jobs.job import Job
from reviewbot.store.sql import SqlFindingStore

BROKER = redis_url(E2E_BROKER_DB)
INSTALLATION = 1
MAINTAINER = "maintainer"


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    yield r
    r.flushdb()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_worker_records_findings_and_beat_refreshes_their_outcomes(
    github: GitHubStandIn, app_key: str, tiny_model_dir: Path, broker, tmp_path: Path
) -> None:
    github.add_repo(REPO)
    github.add_pull(REPO, NUMBER, SAMPLE_DIFF, HEAD, BASE)
    github.set_role(REPO, MAINTAINER, "write")
    database = f"sqlite:///{tmp_path / 'findings.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(
        REVIEWBOT_REDIS_URL=BROKER,
        REVIEWBOT_APP_ID=str(APP_ID),
        REVIEWBOT_PRIVATE_KEY=app_key,
        REVIEWBOT_GITHUB_API_URL=github.url,
        REVIEWBOT_MODEL=str(tiny_model_dir),
        REVIEWBOT_QUANTIZE="4bit",
        REVIEWBOT_MAX_NEW_TOKENS="10",
        REVIEWBOT_PROFILE="assertive",
        REVIEWBOT_DATABASE_URL=database,
        REVIEWBOT_OUTCOME_REFRESH_SECONDS="1",
        REVIEWBOT_CACHE=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
    )
    worker = CeleryWorker(env, tmp_path / "worker.log")
    beat_log = open(tmp_path / "beat.log", "a")  # noqa: SIM115 - closed below
    beat: subprocess.Popen | None = None
    try:
        worker.wait_for(" ready.", 90)
        send_job(Job("auto", REPO, INSTALLATION, NUMBER, HEAD))
        worker.wait_for("finished: posted", 180)

        store = SqlFindingStore.open(database)
        found = store.findings(REPO, NUMBER)
        comments = github.review_comments(REPO, NUMBER)
        assert found and len(found) == len(comments)
        assert {f.finding.installation_id for f in found} == {INSTALLATION}
        assert {f.finding.model for f in found} == {str(tiny_model_dir)}
        target = comments[0]
        fingerprint = next(iter(parse_markers(target["body"]).findings))
        github.react(REPO, "review", target["id"], "-1", login=MAINTAINER)

        beat = subprocess.Popen(
            [sys.executable, "-m", "reviewbot.cli", "beat", "--schedule", str(tmp_path / "s")],
            cwd=ROOT,
            env=env,
            stdout=beat_log,
            stderr=subprocess.STDOUT,
        )

        def rejected():
            labels = {i.finding.fingerprint: i for i in store.findings(REPO, NUMBER)}
            item = labels[fingerprint]
            return item if item.outcome.label == "rejected" else None

        item = wait_until(rejected, 120, "the beat's refresh to label the finding")
        assert [(e.signal, e.by) for e in item.outcome.evidence] == [("thumbs-down", MAINTAINER)]
        assert item.comment_id == target["id"]
        others = [i for i in store.findings(REPO, NUMBER) if i.finding.fingerprint != fingerprint]
        assert all(i.outcome.label == "unknown" for i in others)
        assert "outcomes: refreshed 1 pull request(s)" in worker.text()
        store.close()
    finally:
        if beat is not None and beat.poll() is None:
            beat.send_signal(signal.SIGTERM)
            beat.wait(20)
        beat_log.close()
        worker.stop()
    assert "Scheduler: Sending due task refresh-outcomes" in (tmp_path / "beat.log").read_text()
