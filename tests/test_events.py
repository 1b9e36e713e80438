"""Webhook signatures and event parsing on GitHub's real payloads."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from typing import Any

import pytest
from conftest import WEBHOOKS

from reviewbot.github.events import (
    EventConfig,
    Ignored,
    PayloadError,
    Rejected,
    parse_delivery,
    parse_event,
    sign,
    verify_signature,
)
from reviewbot.jobs.job import Job
from reviewbot.settings.defaults import MAX_WEBHOOK_BODY_BYTES

HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
BEFORE = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
CONFIG = EventConfig()


def fixture(name: str) -> dict[str, Any]:
    return json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))


# --- signatures --------------------------------------------------------------

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_documented_test_vector() -> None:
    assert sign(GITHUB_BODY, GITHUB_SECRET) == GITHUB_SIGNATURE
    assert verify_signature(GITHUB_BODY, GITHUB_SIGNATURE, [GITHUB_SECRET])


def test_any_of_several_secrets_verifies() -> None:
    assert verify_signature(GITHUB_BODY, GITHUB_SIGNATURE, ["new-secret", GITHUB_SECRET])
    assert verify_signature(GITHUB_BODY, GITHUB_SIGNATURE, (GITHUB_SECRET, "new-secret"))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        GITHUB_SIGNATURE[:-1],  # truncated
        GITHUB_SIGNATURE + "0",  # extended
        GITHUB_SIGNATURE[7:],  # bare hex, no prefix
        "SHA256=" + GITHUB_SIGNATURE[7:],
        "Sha256=" + GITHUB_SIGNATURE[7:],
        "sha256=" + GITHUB_SIGNATURE[7:].upper(),
        " " + GITHUB_SIGNATURE,
        "sha1=" + hmac.new(GITHUB_SECRET.encode(), GITHUB_BODY, hashlib.sha1).hexdigest(),
        sign(GITHUB_BODY, "another secret"),
        sign(b"Hello, World?", GITHUB_SECRET),
        "sha256=\u00e9" + GITHUB_SIGNATURE[8:],  # non-ASCII
    ],
)
def test_bad_signatures_are_rejected(header: str | None) -> None:
    assert not verify_signature(GITHUB_BODY, header, [GITHUB_SECRET])


def test_no_secrets_or_empty_secret_verify_nothing() -> None:
    assert not verify_signature(GITHUB_BODY, GITHUB_SIGNATURE, [])
    assert not verify_signature(b"x", sign(b"x", ""), [""])


# --- pull_request ------------------------------------------------------------


@pytest.mark.parametrize("action", ["opened", "reopened"])
def test_opened_and_reopened_start_a_full_review(action: str) -> None:
    job = parse_event("pull_request", fixture(f"pull_request.{action}"), "d-1", CONFIG)
    assert job == Job(
        kind="auto",
        repo="Codertocat/Hello-World",
        installation_id=1,
        pr_number=2,
        head_sha=HEAD,
        delivery_id="d-1",
        sender="Codertocat",
    )


def test_ready_for_review_starts_a_full_review() -> None:
    payload = fixture("pull_request.opened")
    payload["action"] = "ready_for_review"
    job = parse_event("pull_request", payload, "d-2", CONFIG)
    assert isinstance(job, Job)
    assert (job.kind, job.head_sha, job.before_sha) == ("auto", HEAD, None)


def test_synchronize_starts_an_incremental_review() -> None:
    job = parse_event("pull_request", fixture("pull_request.synchronize"), "d-3", CONFIG)
    assert isinstance(job, Job)
    assert job.kind == "incremental"
    assert (job.before_sha, job.head_sha) == (BEFORE, HEAD)
    assert (job.repo, job.pr_number, job.installation_id) == ("Codertocat/Hello-World", 2, 1)
    assert job.key == f"incremental:Codertocat/Hello-World:2:{HEAD}:"


def test_synchronize_prefers_after_and_falls_back_to_head_sha() -> None:
    payload = fixture("pull_request.synchronize")
    payload["after"] = "a" * 40
    job = parse_event("pull_request", payload, "d", CONFIG)
    assert isinstance(job, Job) and job.head_sha == "a" * 40
    del payload["after"]
    job = parse_event("pull_request", payload, "d", CONFIG)
    assert isinstance(job, Job) and job.head_sha == HEAD


def test_job_round_trips_through_a_dict() -> None:
    job = parse_event("pull_request", fixture("pull_request.synchronize"), "d", CONFIG)
    assert isinstance(job, Job)
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_drafts_become_jobs_for_the_worker_to_decide_by_repo_config() -> None:
    payload = fixture("pull_request.opened")
    payload["pull_request"]["draft"] = True
    job = parse_event("pull_request", payload, "d", CONFIG)
    assert isinstance(job, Job) and job.kind == "auto"


# --- whole deliveries (headers + raw body): every HTTP rule -----------------------


def delivery(
    body: bytes, event: str = "pull_request", secret: str = GITHUB_SECRET, **extra: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": sign(body, secret),
        **extra,
    }


def test_a_signed_delivery_becomes_its_job_whatever_the_header_case() -> None:
    body = json.dumps(fixture("pull_request.opened")).encode()
    headers = {k.lower(): v for k, v in delivery(body).items()}
    headers["content-type"] = "application/json; charset=utf-8"
    job = parse_delivery(headers, body, [GITHUB_SECRET])
    assert isinstance(job, Job)
    assert (job.kind, job.delivery_id) == ("auto", "72d3162e-cc78-11e3-81ab-4c9367dc0958")


def test_a_ping_is_answered_not_queued() -> None:
    body = json.dumps(fixture("ping.with-app_id")).encode()
    assert parse_delivery(delivery(body, "ping"), body, [GITHUB_SECRET]) == Ignored(
        "ping", status="pong"
    )


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"X-Hub-Signature-256": ""}, 401, "signature"),
        ({"X-Hub-Signature-256": sign(b"other", GITHUB_SECRET)}, 401, "signature"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"X-GitHub-Event": ""}, 400, "X-GitHub-Event"),
        ({"X-GitHub-Delivery": " "}, 400, "X-GitHub-Delivery"),
    ],
)
def test_bad_headers_are_rejected_with_their_status(
    change: dict[str, str], status: int, reason: str
) -> None:
    body = json.dumps(fixture("pull_request.opened")).encode()
    outcome = parse_delivery({**delivery(body), **change}, body, [GITHUB_SECRET])
    assert isinstance(outcome, Rejected)
    assert outcome.status == status and reason in outcome.reason


def test_the_signature_is_checked_before_anything_else_is_read() -> None:
    body = b"not json at all"
    unsigned = {**delivery(body), "X-Hub-Signature-256": "", "Content-Type": "text/plain"}
    assert parse_delivery(unsigned, body, [GITHUB_SECRET]).status == 401  # type: ignore[union-attr]
    assert parse_delivery(delivery(body), body, [GITHUB_SECRET]) == Rejected(
        400, "malformed JSON body"
    )


def test_a_payload_missing_what_its_event_needs_is_400() -> None:
    payload = fixture("pull_request.opened")
    del payload["pull_request"]["head"]
    body = json.dumps(payload).encode()
    assert parse_delivery(delivery(body), body, [GITHUB_SECRET]) == Rejected(
        400, "payload is missing pull_request.head.sha"
    )


def test_a_body_over_githubs_cap_is_413() -> None:
    body = b" " * (MAX_WEBHOOK_BODY_BYTES + 1)
    outcome = parse_delivery(delivery(body), body, [GITHUB_SECRET])
    assert isinstance(outcome, Rejected) and outcome.status == 413


def test_bot_senders_are_ignored() -> None:
    payload = fixture("pull_request.synchronize")
    payload["sender"] = {"login": "dependabot[bot]", "type": "Bot"}
    outcome = parse_event("pull_request", payload, "d", CONFIG)
    assert isinstance(outcome, Ignored) and "bot" in outcome.reason


def test_own_login_is_ignored() -> None:
    payload = fixture("pull_request.opened")
    config = EventConfig(bot_login="Codertocat")
    assert parse_event("pull_request", payload, "d", config) == Ignored(
        "sender is reviewbot itself"
    )


def test_closed_pull_requests_are_ignored() -> None:
    payload = fixture("pull_request.opened")
    payload["action"] = "closed"
    assert parse_event("pull_request", payload, "d", CONFIG) == Ignored("pull request closed")
    payload = fixture("pull_request.synchronize")
    payload["pull_request"]["state"] = "closed"
    assert parse_event("pull_request", payload, "d", CONFIG) == Ignored("pull request is closed")


def test_other_pull_request_actions_are_unhandled() -> None:
    payload = fixture("pull_request.opened")
    payload["action"] = "labeled"
    outcome = parse_event("pull_request", payload, "d", CONFIG)
    assert isinstance(outcome, Ignored)
    assert outcome.reason.startswith("unhandled event") and "labeled" in outcome.reason
    assert not outcome.handled


# --- other events ------------------------------------------------------------


def test_ping_is_handled_with_a_pong() -> None:
    outcome = parse_event("ping", fixture("ping.with-app_id"), "d", CONFIG)
    assert outcome == Ignored("ping", status="pong")


def test_installation_is_handled_and_ignored() -> None:
    outcome = parse_event("installation", fixture("installation.created"), "d", CONFIG)
    assert outcome == Ignored("installation created: nothing to do")
    assert outcome.handled


def test_unknown_events_are_unhandled() -> None:
    outcome = parse_event("star", {"action": "created"}, "d", CONFIG)
    assert outcome == Ignored("unhandled event 'star'", handled=False)


# --- malformed payloads ------------------------------------------------------


def _without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = payload
    for name in parents:
        node = node[name]
    del node[last]
    return payload


@pytest.mark.parametrize(
    "path",
    [
        "action",
        "installation",
        "installation.id",
        "repository",
        "repository.full_name",
        "pull_request",
        "pull_request.number",
        "pull_request.head.sha",
    ],
)
def test_missing_required_fields_raise(path: str) -> None:
    payload = _without(fixture("pull_request.opened"), path)
    with pytest.raises(PayloadError, match=re.escape(path)):
        parse_event("pull_request", payload, "d", CONFIG)


def test_wrongly_typed_fields_raise() -> None:
    payload = fixture("pull_request.opened")
    payload["pull_request"]["number"] = "2"
    with pytest.raises(PayloadError, match=r"pull_request\.number"):
        parse_event("pull_request", payload, "d", CONFIG)
    payload = fixture("pull_request.opened")
    payload["installation"]["id"] = True
    with pytest.raises(PayloadError, match=r"installation\.id"):
        parse_event("pull_request", payload, "d", CONFIG)


def test_synchronize_needs_a_before_sha() -> None:
    payload = _without(fixture("pull_request.synchronize"), "before")
    with pytest.raises(PayloadError, match="before"):
        parse_event("pull_request", payload, "d", CONFIG)
    payload = fixture("pull_request.synchronize")
    payload["before"] = "not-a-sha"
    with pytest.raises(PayloadError, match="before"):
        parse_event("pull_request", payload, "d", CONFIG)


def test_non_object_payload_raises() -> None:
    with pytest.raises(PayloadError):
        parse_event("pull_request", [1, 2], "d", CONFIG)  # type: ignore[arg-type]


# --- slash commands ------------------------------------------------------------


def pr_comment(body: str, **changes: Any) -> dict[str, Any]:
    """The real issue_comment payload, made a pull-request comment (``issue.pull_request``)."""
    payload = fixture("issue_comment.created.with-installation")
    payload["issue"]["pull_request"] = {
        "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"
    }
    payload["comment"]["body"] = body
    payload.update(changes)
    return payload


def test_a_pr_conversation_command_is_an_interactive_job() -> None:
    job = parse_event("issue_comment", pr_comment("/revise use a dict"), "d-c", CONFIG)
    assert isinstance(job, Job)
    assert (job.kind, job.repo, job.pr_number, job.installation_id) == (
        "revise",
        "Codertocat/Hello-World",
        1,
        1,
    )
    assert (job.comment_id, job.comment_type, job.args) == (
        492700400,
        "issue",
        "/revise use a dict",
    )
    assert job.head_sha == ""  # the worker reads the current head
    assert job.interactive and job.sender == "Codertocat"
    assert job.key == "revise:Codertocat/Hello-World:1::492700400"


def test_an_inline_thread_command_carries_the_head_and_the_comment() -> None:
    payload = fixture("pull_request_review_comment.created")
    payload["comment"]["body"] = "@reviewbot ask why the emoji?"
    job = parse_event("pull_request_review_comment", payload, "d-r", CONFIG)
    assert isinstance(job, Job)
    assert (job.kind, job.pr_number, job.head_sha) == ("ask", 2, HEAD)
    assert (job.comment_id, job.comment_type) == (284312630, "review")


def test_unknown_commands_are_answered_with_help() -> None:
    job = parse_event("issue_comment", pr_comment("/frobnicate"), "d", CONFIG)
    assert isinstance(job, Job) and job.kind == "help"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (fixture("issue_comment.created.with-installation"), "not on a pull request"),
        (pr_comment("Thanks, fixed!"), "no command"),
        (pr_comment("/review", action="edited"), "comment edited"),
        (pr_comment("/review", action="deleted"), "comment deleted"),
        (
            pr_comment("/review", sender={"login": "dependabot[bot]", "type": "Bot"}),
            "is a bot",
        ),
        (pr_comment("/review", sender={"login": "my-ci[bot]", "type": "User"}), "is a bot"),
        (pr_comment("Done.\n<!-- reviewbot:reply:1 -->\n/review"), "no command"),
    ],
)
def test_comments_that_start_no_job(payload: dict[str, Any], reason: str) -> None:
    outcome = parse_event("issue_comment", payload, "d", CONFIG)
    assert isinstance(outcome, Ignored)
    assert reason in outcome.reason


def test_the_bots_own_comments_never_run() -> None:
    payload = pr_comment("/review")
    payload["sender"] = payload["comment"]["user"] = {"login": "reviewbot-app", "type": "User"}
    outcome = parse_event("issue_comment", payload, "d", EventConfig(bot_login="reviewbot-app"))
    assert isinstance(outcome, Ignored) and "reviewbot itself" in outcome.reason


def test_commands_on_closed_pull_requests_are_ignored() -> None:
    payload = pr_comment("/review")
    payload["issue"]["state"] = "closed"
    outcome = parse_event("issue_comment", payload, "d", CONFIG)
    assert isinstance(outcome, Ignored) and "closed" in outcome.reason


def test_a_command_comment_without_an_id_is_a_payload_error() -> None:
    payload = pr_comment("/review")
    del payload["comment"]["id"]
    with pytest.raises(PayloadError, match=r"comment\.id"):
        parse_event("issue_comment", payload, "d", CONFIG)
