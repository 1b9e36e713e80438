"""The worker records what it posts, and ``reviewbot beat`` refreshes the outcomes.

A real ``reviewbot worker`` (tiny 4-bit model) reviews a pull request served by the
GitHub stand-in and records its findings in the findings database (a SQLite file); a
maintainer reacts 👎 to one of them; a real ``reviewbot beat`` process (Celery beat,
every second here) queues the outcome refresh, which the worker runs on its
``outcomes`` queue: the finding is labelled ``rejected`` with the maintainer's name.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT
from github_standin import (  # noqa: F401  (fixtures: github, app_key)
    GitHubStandIn,
    app_key_fixture,
    github_fixture,
)
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    HEAD,
    NUMBER,
    REPO,
    broker,
    pr,
    send_job,
    start_worker,
    worker_env,
)

from reviewbot.github.markers import parse_markers
from reviewbot.jobs.job import Job
from reviewbot.store.sql import SqlFindingStore

INSTALLATION = 1
MAINTAINER = "maintainer"


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_worker_records_findings_and_beat_refreshes_their_outcomes(
    pr: GitHubStandIn, worker_env: dict[str, str], start_worker, tiny_model_dir: Path, tmp_path
) -> None:
    github = pr
    github.set_role(REPO, MAINTAINER, "write")
    database = f"sqlite:///{tmp_path / 'findings.sqlite3'}"
    extra = {
        "REVIEWBOT_DATABASE_URL": database,
        "REVIEWBOT_OUTCOME_REFRESH_SECONDS": "1",
        "REVIEWBOT_CACHE": str(tmp_path / "cache"),
    }
    env = {**worker_env, **extra}
    worker = start_worker(**extra)
    beat_log = open(tmp_path / "beat.log", "a")  # noqa: SIM115 - closed below
    beat: subprocess.Popen | None = None
    try:
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
    assert "Scheduler: Sending due task refresh-outcomes" in (tmp_path / "beat.log").read_text()
