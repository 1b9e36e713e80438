"""Outsiders cannot steer or starve the GPU, through the real parts.

Signed real payloads → the Flask app over HTTP → real Redis (dedupe, rate limits,
per-installation caps) → the Celery queue; the GitHub stand-in records whether the
web process touched GitHub (👀) for a command that will not run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BROKER,
    NUMBER,
    OPENED,
    REPO,
    SECRET,
    broker,
    deliver,
    payload,
    pr,
    start_worker,
    worker_env,
)
from test_commands_e2e import WRITER, conversation_event, thread_event, writer  # noqa: F401
from werkzeug.serving import make_server

from reviewbot.server.app import create_app
from reviewbot.settings.defaults import OPEN_COMMAND_LIMIT
from reviewbot.settings.server import Settings


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The webhook app over loopback HTTP with ``settings``; its URL."""
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/webhook"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def web(broker, github: GitHubStandIn, app_key: str) -> Callable[..., object]:
    """Serve the webhook with the App's credentials (it may react 👀) and ``changes``."""

    def make(**changes: object):
        base = dict(
            webhook_secrets=(SECRET,),
            redis_url=BROKER,
            app_id=APP_ID,
            private_key=app_key,
            github_api_url=github.url,
            web_reactions=True,
        )
        return serving(Settings(**{**base, **changes}))

    return make


def reactions_posted(github: GitHubStandIn) -> int:
    return len(github.requests_to("POST", r"/reactions$"))


def test_an_outsiders_model_command_is_answered_2xx_and_never_queued(writer, web, broker):
    """author_association NONE: dropped at the webhook, no 👀, no job; a collaborator's runs."""
    outsider = writer.add_issue_comment(REPO, NUMBER, "/review", login="mallory")
    in_thread = writer.add_review_comment(
        REPO, NUMBER, "/ask what does this do?", "app/cache.py", 5, login="mallory"
    )
    with web() as url:
        r = deliver(url, "issue_comment", conversation_event(outsider))
        assert r.status_code == 200 and r.json()["status"] == "ignored"
        assert "'mallory' (NONE)" in r.json()["reason"]
        r = deliver(url, "pull_request_review_comment", thread_event(in_thread))
        assert r.status_code == 200 and r.json()["status"] == "ignored"
        assert broker.llen("interactive") == 0
        assert reactions_posted(writer) == 0
        # the same command by the repository's owner (OWNER) is queued, with 👀
        own = writer.add_issue_comment(REPO, NUMBER, "/review", login=WRITER)
        assert deliver(url, "issue_comment", conversation_event(own)).status_code == 202
    assert broker.llen("interactive") == 1
    assert reactions_posted(writer) == 1


def test_help_and_unknown_commands_are_rate_limited_per_user_and_pr(writer, web, broker):
    with web() as url:
        statuses = []
        for i in range(OPEN_COMMAND_LIMIT + 2):
            body = "/help" if i % 2 else f"/frobnicate{i}"
            c = writer.add_issue_comment(REPO, NUMBER, body, login="reader")
            statuses.append(deliver(url, "issue_comment", conversation_event(c)).json()["status"])
        assert statuses == ["queued"] * OPEN_COMMAND_LIMIT + ["ignored", "ignored"]
        assert broker.llen("interactive") == OPEN_COMMAND_LIMIT
        assert reactions_posted(writer) == OPEN_COMMAND_LIMIT  # no 👀 for the refused ones
        # another user on the same pull request has their own allowance
        other = writer.add_issue_comment(REPO, NUMBER, "/help", login="someone-else")
        assert deliver(url, "issue_comment", conversation_event(other)).status_code == 202


def synchronize(head: str) -> dict:
    event = payload("pull_request.synchronize.json")
    event["after"] = head
    event["pull_request"]["head"]["sha"] = head
    return event


def test_an_installation_over_its_job_cap_is_refused_until_its_jobs_end(
    pr, web, broker, start_worker
):
    heads = [f"{i:040x}" for i in range(1, 4)]
    with web(installation_max_jobs=2) as url:
        answers = [deliver(url, "pull_request", synchronize(h)) for h in heads]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert "has 2 jobs queued or running (the cap is 2)" in answers[2].json()["error"]
        assert broker.llen("reviews") == 2
        # the refused delivery left no claim: once the queued jobs end, GitHub's
        # redelivery of it is admitted
        worker = start_worker()
        worker.wait_for("finished:", 180, count=2)
        again = deliver(
            url,
            "pull_request",
            synchronize(heads[2]),
            delivery=answers[2].request.headers["X-GitHub-Delivery"],
        )
        assert again.status_code == 202, again.text


def test_the_web_does_not_touch_github_unless_asked_to_react(writer, web, broker):
    """The App's key in the environment is not a reason for the web to use it."""
    command = writer.add_issue_comment(REPO, NUMBER, "/review", login=WRITER)
    before = len(writer.requests)
    with web(web_reactions=False) as url:
        r = deliver(url, "issue_comment", conversation_event(command))
    assert r.status_code == 202
    assert len(writer.requests) == before  # no token, no 👀: the worker reacts
    assert json.loads(json.dumps(r.json()["job"]))["kind"] == "review"


def test_an_adapter_reserved_for_other_owners_fails_the_check_run_naming_the_key(
    pr, web, start_worker, tiny_adapter_dir
):
    """REVIEWBOT_ADAPTERS names the owners allowed; Codertocat's repo may not use it."""
    pr.set_file(REPO, "main", ".github/reviewbot.toml", 'adapter = "team"\n')
    worker = start_worker(REVIEWBOT_ADAPTERS=f"team@octo-org={tiny_adapter_dir}")
    with web() as url:
        assert deliver(url, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: failed", 180)
    assert pr.reviews(REPO, NUMBER) == []
    (run,) = pr.check_runs(REPO)
    assert run["conclusion"] == "failure"
    assert run["output"]["title"] == "Invalid .github/reviewbot.toml"
    assert "adapter 'team' is not available to Codertocat" in run["output"]["summary"]


def test_an_adapter_names_its_owners_and_serves_them(pr, web, start_worker, tiny_adapter_dir):
    pr.set_file(REPO, "main", ".github/reviewbot.toml", 'adapter = "team"\n')
    worker = start_worker(REVIEWBOT_ADAPTERS=f"team@octo-org+codertocat={tiny_adapter_dir}")
    with web() as url:
        assert deliver(url, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: posted", 180)
    assert f"loading LoRA adapter {tiny_adapter_dir}" in worker.text()
    assert len(pr.reviews(REPO, NUMBER)) == 1
