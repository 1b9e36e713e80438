"""Every job has a deadline (issue 11, item 6), against real parts.

A real webhook delivery → Redis → ``reviewbot worker`` (prefork) running a tiny 4-bit
model given a long context and a huge ``max_new_tokens`` (it never emits an
end-of-sequence token, so generating would take minutes) → PyGithub to the GitHub
stand-in. With a short time budget the worker stops generating at the deadline: the
check run ends ``timed_out`` saying so, within the budget plus a small margin, and
no review is posted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    NUMBER,
    OPENED,
    REPO,
    broker,
    deliver,
    pr,
    start_worker,
    webhook,
    worker_env,
)

BUDGET = 25
"""Seconds: enough to load the tiny model and fetch the pull request on a slow machine,
so that the deadline passes while the model generates."""
MARGIN = 5
"""Seconds past the budget within which the check run must say so (Celery's soft limit,
which would report an internal error instead, comes 5 s after the budget)."""


@pytest.fixture(scope="module")
def slow_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 64k-token context: generating 60k tokens takes minutes."""
    out = tmp_path_factory.mktemp("slow-model") / "model"
    shutil.copytree(tiny_model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["max_position_embeddings"] = 65536
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_a_job_past_its_budget_stops_generating_and_its_check_run_says_so(
    pr, webhook, start_worker, slow_model_dir
):
    worker = start_worker(
        REVIEWBOT_MODEL=str(slow_model_dir),
        REVIEWBOT_MAX_NEW_TOKENS="60000",
        REVIEWBOT_JOB_TIME_BUDGET=str(BUDGET),
    )
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("started (attempt 1 of", 60)
    started = time.monotonic()
    worker.wait_for("finished: failed", BUDGET + 60)
    elapsed = time.monotonic() - started

    assert elapsed <= BUDGET + MARGIN, worker.text()[-3000:]
    assert "SoftTimeLimitExceeded" not in worker.text()
    assert pr.reviews(REPO, NUMBER) == []
    (run,) = pr.check_runs(REPO)
    assert (run["status"], run["conclusion"]) == ("completed", "timed_out")
    assert run["output"]["title"] == "reviewbot ran past its time budget"
    assert run["output"]["summary"] == (
        f"The job ran past its time budget of {BUDGET} s (during generation); nothing was posted."
    )


def test_reviewbot_worker_refuses_a_visibility_timeout_below_the_hard_limit(worker_env):
    """A job still running at the visibility timeout would run twice: no worker starts."""
    env = {**worker_env, "REVIEWBOT_VISIBILITY_TIMEOUT": "600"}
    result = subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "REVIEWBOT_VISIBILITY_TIMEOUT (600 s) must be above a job's hard time limit" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
