"""Slash commands end to end, against real parts.

Real payloads (issue_comment with ``issue.pull_request`` added; a created
pull_request_review_comment), signed → the Flask app over HTTP (which reacts 👀
through the GitHub App) → real Redis → a real Celery worker subprocess with a
tiny 4-bit model → PyGithub over HTTP to the GitHub stand-in, whose recorded
requests are the assertions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BROKER,
    HEAD,
    NUMBER,
    OPENED,
    REPO,
    SECRET,
    broker,
    deliver,
    payload,
    pr,
    send_job,
    start_worker,
    wait_until,
    worker_env,
)
from tinymodel import overfit_tiny_model
from werkzeug.serving import make_server

from reviewbot.github.conversation import ThreadComment, revise_comment, thread_unit
from reviewbot.jobs.job import Job
from reviewbot.review.findings import Finding
from reviewbot.review.pipeline import revise_prompts
from reviewbot.review.prompts import Renderer
from reviewbot.review.suggestions import Suggestion, apply_suggestion
from reviewbot.server.app import create_app
from reviewbot.settings.defaults import QUEUE_INTERACTIVE
from reviewbot.settings.server import Settings

WRITER = "Codertocat"
FILE_AT_HEAD = (
    "import time\n\n\nclass Cache:\n    def __init__(self, ttl, items={}):\n"
    "        self.ttl = ttl\n        self.items = items\n\n    def get(self, key):\n"
)
REVISED = (
    "    def __init__(self, ttl, items=None):\n        self.ttl = ttl\n"
    "        self.items = {} if items is None else items"
)
HUMAN_CRITIQUE = "A mutable default is shared between instances."
INSTRUCTIONS = "use None as the default"


@pytest.fixture
def webhook(broker, github: GitHubStandIn, app_key: str) -> Iterator[str]:
    """The Flask app with the App's credentials: it reacts 👀 before queueing."""
    settings = Settings(
        webhook_secrets=(SECRET,),
        redis_url=BROKER,
        app_id=APP_ID,
        private_key=app_key,
        github_api_url=github.url,
        web_reactions=True,
    )
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhook"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def writer(pr: GitHubStandIn) -> GitHubStandIn:
    pr.set_role(REPO, WRITER, "write")
    pr.set_file(REPO, HEAD, "app/cache.py", FILE_AT_HEAD)
    return pr


def conversation_event(comment: dict) -> dict:
    """issue_comment created, on the pull request, for a comment made in the stand-in."""
    event = payload("issue_comment.created.with-installation.json")
    event["repository"] = OPENED["repository"]
    event["issue"]["number"] = NUMBER
    event["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/2"}
    event["comment"] = comment
    event["sender"] = comment["user"]
    return event


def thread_event(comment: dict) -> dict:
    """pull_request_review_comment created, for a comment made in the stand-in."""
    event = payload("pull_request_review_comment.created.json")
    event["repository"] = OPENED["repository"]
    event["pull_request"] = OPENED["pull_request"]
    event["comment"] = comment
    event["sender"] = comment["user"]
    return event


def reaction_calls(github: GitHubStandIn, where: str, comment_id: int) -> list[str]:
    """The reaction API calls made on a comment, in order: "+eyes", "-", "+rocket"..."""
    calls = []
    pattern = re.compile(rf"/{where}/comments/{comment_id}/reactions")
    for r in (r for r in github.requests if pattern.search(r.path)):
        if r.method == "POST":
            calls.append(f"+{r.json['content']}")
        elif r.method == "DELETE":
            calls.append("-")
    return calls


def replies(github: GitHubStandIn) -> list[dict]:
    return [c for c in github.issue_comments(REPO, NUMBER) if c["user"]["type"] == "Bot"]


# --- each command ----------------------------------------------------------------------


def test_help_answers_with_the_commands_and_the_effective_config(writer, webhook, start_worker):
    writer.set_file(REPO, "main", ".github/reviewbot.toml", "max_comments = 7\n")
    worker = start_worker()
    # /help needs no permission: a reader asks
    comment = writer.add_issue_comment(REPO, NUMBER, "/help", login="reader")
    r = deliver(webhook, "issue_comment", conversation_event(comment))
    assert r.status_code == 202 and r.json()["queue"] == "interactive"
    # 👀 was added by the web server before the job was queued
    assert reaction_calls(writer, "issues", comment["id"])[:1] == ["+eyes"]
    worker.wait_for("finished: answered", 120)

    (answer,) = replies(writer)
    assert f"<!-- reviewbot:reply:{comment['id']} -->" in answer["body"]
    for usage in ("/review", "/revise [instructions]", "/summary", "/ask <question>"):
        assert usage in answer["body"]
    assert "max_comments = 7" in answer["body"]
    assert writer.reactions("issue", comment["id"]) == ["rocket"]
    assert reaction_calls(writer, "issues", comment["id"])[-2:] == ["-", "+rocket"]
    assert writer.reviews(REPO, NUMBER) == []  # no model work

    # an unknown command gets the same help, naming the command
    unknown = writer.add_issue_comment(REPO, NUMBER, "/frobnicate", login="reader")
    assert deliver(webhook, "issue_comment", conversation_event(unknown)).status_code == 202
    worker.wait_for("finished: answered", 120, count=2)
    assert replies(writer)[-1]["body"].startswith("Unknown command `/frobnicate`.")


def test_review_command_posts_one_full_review_and_never_runs_twice(
    writer,
    webhook,
    start_worker,
    broker,
):
    worker = start_worker()
    comment = writer.add_issue_comment(REPO, NUMBER, "/review", login=WRITER)
    event = conversation_event(comment)
    first = deliver(webhook, "issue_comment", event)
    assert first.status_code == 202
    worker.wait_for("finished: posted", 180)
    (review,) = writer.reviews(REPO, NUMBER)
    assert f"<!-- reviewbot:review:{HEAD}:" in review["body"]
    assert f"<!-- reviewbot:reply:{comment['id']} -->" in review["body"]
    assert review["comments"], "a full review comments on the diff"
    assert writer.reactions("issue", comment["id"]) == ["rocket"]
    assert len(writer.check_runs(REPO)) == 1

    # the same delivery again, and an edit of the comment: nothing runs
    again = deliver(
        webhook, "issue_comment", event, delivery=first.request.headers["X-GitHub-Delivery"]
    )
    assert again.json()["status"] == "duplicate"
    edited = dict(event, action="edited")
    assert deliver(webhook, "issue_comment", edited).json()["status"] == "ignored"
    # the same job straight onto the queue (past the webhook's dedupe): answered once
    send_job(Job.from_dict(first.json()["job"]), QUEUE_INTERACTIVE)
    worker.wait_for("finished: already-answered", 120)
    assert len(writer.reviews(REPO, NUMBER)) == 1
    assert replies(writer) == []


@pytest.fixture
def revise_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A tiny model trained to answer the thread's revise prompt with REVISED."""
    thread = [
        ThreadComment(1, "alice", HUMAN_CRITIQUE, False),
        ThreadComment(2, WRITER, f"/revise {INSTRUCTIONS}", False),
    ]
    unit = thread_unit("app/cache.py", FILE_AT_HEAD, 5, 7)  # the thread's lines
    critique = revise_comment(thread[:1], INSTRUCTIONS)
    (prompt,) = revise_prompts([Finding(unit, critique)], Renderer("alpaca"))
    return overfit_tiny_model(
        tiny_model_dir, tmp_path_factory.mktemp("revise"), [(prompt, REVISED)]
    )


def test_revise_in_a_thread_replies_with_a_suggestion_that_yields_the_revision(
    writer, webhook, start_worker, revise_model
):
    worker = start_worker(REVIEWBOT_MODEL=str(revise_model), REVIEWBOT_MAX_NEW_TOKENS="64")
    # a human reviewer comments on lines 5-7; the author asks the bot in the thread
    root = writer.add_review_comment(
        REPO, NUMBER, HUMAN_CRITIQUE, "app/cache.py", 7, start_line=5, login="alice"
    )
    command = writer.add_review_comment(
        REPO, NUMBER, f"/revise {INSTRUCTIONS}", login=WRITER, in_reply_to=root["id"]
    )
    assert deliver(webhook, "pull_request_review_comment", thread_event(command)).ok
    worker.wait_for("finished: answered", 120)

    # exactly one reply, in the thread (to its top-level comment), nothing else posted
    posts = writer.requests_to("POST", rf"/pulls/{NUMBER}/comments/\d+/replies")
    assert [p.path.split("/")[-2] for p in posts] == [str(root["id"])]
    assert all("reviewbot" not in r["body"] for r in writer.reviews(REPO, NUMBER))
    reply = writer.review_comments(REPO, NUMBER)[-1]
    assert reply["in_reply_to_id"] == root["id"]
    assert (reply["start_line"], reply["line"], reply["side"]) == (5, 7, "RIGHT")
    m = re.search(r"```suggestion\n(.*?)\n```", reply["body"], re.S)
    assert m, reply["body"]
    # applied to the file at the head, the suggestion yields the model's revision
    lines = FILE_AT_HEAD.split("\n")
    applied = apply_suggestion(lines, 1, Suggestion(5, 7, tuple(m.group(1).split("\n"))))
    assert "\n".join(applied) == FILE_AT_HEAD.replace("\n".join(lines[4:7]), REVISED)
    assert writer.reactions("review", command["id"]) == ["rocket"]
    # 👀 by the web server, again (idempotent) when the worker starts, then 🚀 replaces it
    assert reaction_calls(writer, "pulls", command["id"]) == ["+eyes", "+eyes", "-", "+rocket"]


def test_revise_in_the_conversation_revises_the_unresolved_findings(writer, webhook, start_worker):
    worker = start_worker()
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: posted", 180)
    (auto,) = writer.reviews(REPO, NUMBER)
    findings = auto["comments"]
    assert findings

    comment = writer.add_issue_comment(REPO, NUMBER, "/revise keep it short", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(comment)).status_code == 202
    worker.wait_for("finished: posted", 180, count=2)
    _, revise = writer.reviews(REPO, NUMBER)
    assert f"<!-- reviewbot:revise:{HEAD}:" in revise["body"]
    assert f"<!-- reviewbot:reply:{comment['id']} -->" in revise["body"]
    # one revision per unresolved finding, on that finding's file and lines, or counted
    # in the body as not posted (the random model's revisions are mostly prose)
    held = re.search(r"Not posted: ([^.]*)\.", revise["body"])
    not_posted = sum(int(n) for n in re.findall(r"\((\d+)\)", held.group(1))) if held else 0
    assert len(revise["comments"]) + not_posted == len(findings)
    for new in revise["comments"]:
        assert any(
            new["path"] == old["path"] and new["line"] <= old["line"] + 20 for old in findings
        )
    assert writer.reactions("issue", comment["id"]) == ["rocket"]

    # once every reviewbot thread is resolved there is nothing left to revise
    for c in writer.review_comments(REPO, NUMBER):
        writer.resolve_thread(REPO, NUMBER, c["id"])
    again = writer.add_issue_comment(REPO, NUMBER, "/revise", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(again)).status_code == 202
    worker.wait_for("finished: answered", 120)
    assert len(writer.reviews(REPO, NUMBER)) == 2
    (answer,) = replies(writer)
    assert answer["body"].startswith("There are no unresolved reviewbot findings")


def test_summary_posts_the_summary_as_a_comment(writer, webhook, start_worker):
    worker = start_worker()
    comment = writer.add_issue_comment(REPO, NUMBER, "@reviewbot summary", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(comment)).status_code == 202
    worker.wait_for("finished: answered", 180)
    (answer,) = replies(writer)
    assert answer["body"].startswith(f"## reviewbot summary · `{HEAD[:7]}`")
    assert f"<!-- reviewbot:reply:{comment['id']} -->" in answer["body"]
    assert writer.reviews(REPO, NUMBER) == []
    assert writer.reactions("issue", comment["id"]) == ["rocket"]
    # once per head, like /review: a second /summary is answered without the model
    again = writer.add_issue_comment(REPO, NUMBER, "/summary", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(again)).status_code == 202
    worker.wait_for("finished: already-summarised", 120)
    assert replies(writer)[-1]["body"].startswith(f"`{HEAD[:7]}` was already summarised")
    assert len(replies(writer)) == 2


def test_ask_answers_in_the_conversation_and_in_a_thread(writer, webhook, start_worker):
    worker = start_worker()
    question = writer.add_issue_comment(REPO, NUMBER, "/ask what does this PR change?")
    assert deliver(webhook, "issue_comment", conversation_event(question)).status_code == 202
    worker.wait_for("finished: answered", 120)
    (answer,) = replies(writer)
    assert answer["body"].startswith("> what does this PR change?\n\n")
    assert f"<!-- reviewbot:reply:{question['id']} -->" in answer["body"]

    root = writer.add_review_comment(REPO, NUMBER, "/ask is this safe?", "app/users.py", 14)
    assert deliver(webhook, "pull_request_review_comment", thread_event(root)).ok
    worker.wait_for("finished: answered", 120, count=2)
    thread_reply = writer.review_comments(REPO, NUMBER)[-1]
    assert thread_reply["in_reply_to_id"] == root["id"]
    assert thread_reply["user"]["type"] == "Bot"
    assert f"<!-- reviewbot:reply:{root['id']} -->" in thread_reply["body"]
    assert writer.reactions("review", root["id"]) == ["rocket"]


def test_a_failed_command_says_what_went_wrong_and_reacts_confused(writer, webhook, start_worker):
    writer.set_file(REPO, "main", ".github/reviewbot.toml", "max_comments = 'many'\n")
    worker = start_worker()
    comment = writer.add_issue_comment(REPO, NUMBER, "/summary", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(comment)).status_code == 202
    worker.wait_for("finished: failed", 120)
    (answer,) = replies(writer)
    assert answer["body"].startswith("`/summary` failed: .github/reviewbot.toml: max_comments")
    assert writer.reactions("issue", comment["id"]) == ["confused"]


def test_a_command_github_keeps_failing_is_answered_when_the_retries_run_out(
    writer, webhook, start_worker
):
    from reviewbot.settings.defaults import JOB_MAX_ATTEMPTS, GitHubSettings

    attempts = JOB_MAX_ATTEMPTS * GitHubSettings().attempts
    # every read of the conversation fails, for every client attempt of every task attempt
    writer.fail(
        "GET", rf"/issues/{NUMBER}/comments$", 502, times=attempts, headers={"Retry-After": "0.1"}
    )
    worker = start_worker()
    comment = writer.add_issue_comment(REPO, NUMBER, "/help", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(comment)).status_code == 202
    worker.wait_for(f"giving up after {JOB_MAX_ATTEMPTS} attempts", 120)
    wait_until(lambda: writer.reactions("issue", comment["id"]) == ["confused"], 20, "😕")
    (answer,) = replies(writer)
    assert answer["body"].startswith("`/help` failed: GitHub kept failing")
    assert f"reviewbot gave up after {JOB_MAX_ATTEMPTS} attempts" in answer["body"]
    assert f"<!-- reviewbot:reply:{comment['id']} -->" in answer["body"]
    # every attempt read the conversation, then giving up read it once more (was the
    # comment answered after all?) before answering
    assert len(writer.requests_to("GET", rf"/issues/{NUMBER}/comments$")) == attempts + 1


# --- who may run what --------------------------------------------------------------------


def test_users_without_write_permission_get_one_polite_reply(writer, webhook, start_worker):
    worker = start_worker()
    writer.set_role(REPO, "visitor", "triage")
    first = writer.add_issue_comment(REPO, NUMBER, "/review", login="visitor")
    second = writer.add_issue_comment(REPO, NUMBER, "/ask why?", login="visitor")
    for c in (first, second):
        assert deliver(webhook, "issue_comment", conversation_event(c)).status_code == 202
    worker.wait_for("finished: denied", 120, count=2)
    (reply,) = replies(writer)
    assert reply["body"].startswith("Sorry @visitor, `/review` runs the review model")
    assert writer.reviews(REPO, NUMBER) == [] and writer.check_runs(REPO) == []
    assert writer.reactions("issue", first["id"]) == []  # 👀 taken back, nothing else
    assert writer.reactions("issue", second["id"]) == []


def test_bot_comments_and_the_bots_own_replies_start_nothing(writer, webhook, broker):
    bot = writer.add_issue_comment(REPO, NUMBER, "/review", login="ci[bot]", user_type="Bot")
    r = deliver(webhook, "issue_comment", conversation_event(bot))
    assert r.status_code == 200 and "bot" in r.json()["reason"]
    own = writer.add_issue_comment(
        REPO, NUMBER, "/review\n\n<!-- reviewbot:reply:1 -->", login=WRITER
    )
    assert deliver(webhook, "issue_comment", conversation_event(own)).json()["status"] == "ignored"
    assert broker.llen("interactive") == 0 and broker.llen("reviews") == 0
    assert writer.requests_to("POST", r"/reactions$") == []


# --- priority ----------------------------------------------------------------------------


def test_a_command_queued_behind_20_automatic_reviews_starts_next(
    writer,
    webhook,
    start_worker,
    broker,
):
    # the first automatic review stays busy (GitHub holds its first answer) while
    # 19 more wait behind it; then a /revise arrives
    held = writer.hold("GET", rf"/repos/{REPO}/pulls/{NUMBER}/reviews$")
    for i in range(20):
        send_job(Job("auto", REPO, 1, NUMBER, f"{i:040x}"))
    worker = start_worker()
    assert held.reached.wait(120), worker.text()[-2000:]
    comment = writer.add_issue_comment(REPO, NUMBER, "/revise", login=WRITER)
    assert deliver(webhook, "issue_comment", conversation_event(comment)).status_code == 202
    wait_until(lambda: broker.llen("interactive") == 1, 10, "the command on the interactive queue")
    held.release.set()
    worker.wait_for("finished:", 180, count=21)
    started = re.findall(r"job (\S+) started", worker.text())
    assert len(started) == 21
    assert started[0].startswith("auto:") and started[0].endswith(f"{0:040x}:")
    assert started[1] == f"revise:{REPO}:{NUMBER}::{comment['id']}"
    assert all(key.startswith("auto:") for key in started[2:])
    wait_until(lambda: writer.reactions("issue", comment["id"]) == ["rocket"], 10, "🚀")
