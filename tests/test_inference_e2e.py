"""A worker that generates through an inference server (issue 16), against real parts.

A real webhook delivery → Redis → ``reviewbot worker`` configured with
``REVIEWBOT_INFERENCE_URL`` (it loads no model, only the tokenizer) → a real
``reviewbot model serve`` process (transformers serve, continuous batching) on the
tiny model → PyGithub to the GitHub stand-in. The server is killed while it serves
the job's first requests: the job is retried by the queue and, once the server is
back, posts its review, once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from inference_server import ServedModel
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


@pytest.fixture
def served(tiny_model_dir: Path, tmp_path: Path):
    server = ServedModel(str(tiny_model_dir), tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


def test_a_worker_reviews_through_the_server_and_survives_it_going_away(
    pr, webhook, start_worker, served
):
    worker = start_worker(
        REVIEWBOT_INFERENCE_URL=served.url,
        REVIEWBOT_MAX_NEW_TOKENS="200",
        REVIEWBOT_QUANTIZE="auto",
    )
    worker.wait_for(f"served by {served.url}", 120)  # tokenizer only: no model loaded
    assert "loading model" not in worker.text()

    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("started (attempt 1 of", 60)
    served.wait_for("[Request received]", 60)  # the job is generating: the server dies
    served.kill()
    worker.wait_for("transient error (model-server)", 60)
    assert pr.reviews(REPO, NUMBER) == []
    (run,) = pr.check_runs(REPO)
    assert run["status"] == "in_progress"  # kept for the retry

    served.start()  # back, on the same port
    worker.wait_for("finished: posted", 180)

    assert "started (attempt 2 of" in worker.text()
    (review,) = pr.reviews(REPO, NUMBER)
    assert review["comments"] or review["body"]
    (run,) = pr.check_runs(REPO)
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert "Traceback" not in worker.text()
