"""The webhook server on GitHub's real payloads, with real Redis (and a real Celery broker)."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from conftest import DEDUPE_DB, WEB_BROKER_DB, WEBHOOKS, redis_url
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from reviewbot.github.events import sign
from reviewbot.jobs.job import Job
from reviewbot.server.app import create_app
from reviewbot.server.queue import CeleryEnqueuer
from reviewbot.settings.defaults import (
    CLAIM_PENDING_TTL,
    DELIVERY_DEDUPE_TTL,
    JOB_DEDUPE_TTL,
    MAX_WEBHOOK_BODY_BYTES,
    QUEUE_INTERACTIVE,
    QUEUE_REVIEWS,
    TASK_RUN_JOB,
)
from reviewbot.settings.server import Settings

DEAD_REDIS = "redis://127.0.0.1:1/0"
SECRET = "webhook-secret-for-tests"
OLD_SECRET = "previous-webhook-secret"
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
BEFORE = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


def fixture_body(name: str, **changes: Any) -> bytes:
    """A real payload from tests/data/webhooks, with top-level fields replaced."""
    payload = json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))
    payload.update(changes)
    return json.dumps(payload).encode()


def headers(
    event: str, body: bytes, delivery: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
    }


@dataclass
class Hook:
    """A webhook app on real Redis whose enqueue appends to ``jobs``."""

    app: Flask
    client: FlaskClient
    redis: redis.Redis
    prefix: str
    jobs: list[Job] = field(default_factory=list)

    def post(self, event: str, body: bytes, **kw: Any) -> TestResponse:
        return self.client.post("/webhook", data=body, headers=headers(event, body, **kw))

    def keys(self) -> list[str]:
        return sorted(k.decode() for k in self.redis.scan_iter(f"{self.prefix}:*"))


@pytest.fixture
def dedupe_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url(DEDUPE_DB))
    client.ping()
    yield client
    client.close()


@pytest.fixture
def make_hook(dedupe_redis: redis.Redis) -> Iterator[Callable[..., Hook]]:
    prefixes: list[str] = []

    def make(
        secrets: tuple[str, ...] = (SECRET,),
        enqueue: Callable[[Job], None] | None = None,
        **settings: Any,
    ) -> Hook:
        prefix = f"test-reviewbot-{uuid.uuid4().hex}"
        prefixes.append(prefix)
        jobs: list[Job] = []
        app = create_app(
            Settings(webhook_secrets=secrets, **settings),
            enqueue=enqueue or jobs.append,
            redis_client=dedupe_redis,
            dedupe_prefix=prefix,
        )
        return Hook(app, app.test_client(), dedupe_redis, prefix, jobs)

    yield make
    for prefix in prefixes:
        for key in dedupe_redis.scan_iter(f"{prefix}:*"):
            dedupe_redis.delete(key)


@pytest.fixture
def hook(make_hook: Callable[..., Hook]) -> Hook:
    return make_hook()


@pytest.fixture
def broker() -> Iterator[tuple[str, redis.Redis]]:
    url = redis_url(WEB_BROKER_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


# --- signatures --------------------------------------------------------------


def _sha1(body: bytes) -> str:
    import hashlib
    import hmac

    return "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "wrong",
        "truncated",
        "sha1-only",
        "other-secret",
        "uppercase-prefix",
        "other-body",
    ],
)
def test_bad_signatures_are_401_and_nothing_is_enqueued(hook: Hook, signature: str | None) -> None:
    body = fixture_body("pull_request.opened")
    hdrs = headers("pull_request", body)
    good = hdrs.pop("X-Hub-Signature-256")
    value = {
        None: None,
        "": "",
        "wrong": "sha256=" + "0" * 64,
        "truncated": good[:-2],
        "sha1-only": None,
        "other-secret": sign(body, "not-the-secret"),
        "uppercase-prefix": "SHA256=" + good[7:],
        "other-body": sign(body + b" ", SECRET),
    }[signature]
    if value is not None:
        hdrs["X-Hub-Signature-256"] = value
    if signature == "sha1-only":
        hdrs["X-Hub-Signature"] = _sha1(body)
    response = hook.client.post("/webhook", data=body, headers=hdrs)
    assert response.status_code == 401
    assert response.json == {"status": "error", "error": "invalid or missing signature"}
    assert hook.jobs == []
    assert hook.keys() == []  # rejected before any Redis work


def test_secret_rotation_accepts_the_second_secret(make_hook: Callable[..., Hook]) -> None:
    hook = make_hook(secrets=(SECRET, OLD_SECRET))
    body = fixture_body("pull_request.opened")
    response = hook.post("pull_request", body, secret=OLD_SECRET)
    assert response.status_code == 202
    assert len(hook.jobs) == 1


# --- transport errors --------------------------------------------------------


def test_body_over_the_cap_is_413_unread(hook: Hook) -> None:
    body = b"x" * (MAX_WEBHOOK_BODY_BYTES + 1)
    response = hook.client.post(
        "/webhook", data=body, headers=headers("pull_request", b"not this body")
    )
    assert response.status_code == 413
    assert response.json["status"] == "error"
    assert hook.jobs == []


def test_body_at_the_cap_is_not_413(hook: Hook) -> None:
    body = b" " * (MAX_WEBHOOK_BODY_BYTES - 2) + b"{}"
    response = hook.post("ping", body)
    assert response.status_code == 200
    assert response.json == {"status": "pong"}


def test_form_encoded_deliveries_are_415(hook: Hook) -> None:
    body = b"payload=" + fixture_body("pull_request.opened")
    hdrs = headers("pull_request", body)
    hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    response = hook.client.post("/webhook", data=body, headers=hdrs)
    assert response.status_code == 415
    assert "application/json" in response.json["error"]
    assert hook.jobs == []


def test_malformed_json_is_400(hook: Hook) -> None:
    response = hook.post("pull_request", b'{"action": "opened",')
    assert response.status_code == 400
    assert response.json == {"status": "error", "error": "malformed JSON body"}
    assert hook.jobs == []


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_github_headers_are_400(hook: Hook, missing: str) -> None:
    body = fixture_body("pull_request.opened")
    hdrs = headers("pull_request", body)
    del hdrs[missing]
    response = hook.client.post("/webhook", data=body, headers=hdrs)
    assert response.status_code == 400
    assert missing in response.json["error"]
    assert hook.jobs == []


def test_payload_missing_fields_is_400(hook: Hook) -> None:
    payload = json.loads(fixture_body("pull_request.opened"))
    del payload["installation"]
    response = hook.post("pull_request", json.dumps(payload).encode())
    assert response.status_code == 400
    assert "installation" in response.json["error"]
    assert hook.jobs == []


def test_unknown_route_and_method_answer_json(hook: Hook) -> None:
    assert hook.client.get("/nope").status_code == 404
    response = hook.client.get("/webhook")
    assert response.status_code == 405
    assert response.json["status"] == "error"


# --- events ------------------------------------------------------------------


def test_ping_answers_pong(hook: Hook) -> None:
    response = hook.post("ping", fixture_body("ping.with-app_id"))
    assert (response.status_code, response.json) == (200, {"status": "pong"})
    assert hook.jobs == []


def test_installation_is_handled_without_a_job(hook: Hook) -> None:
    response = hook.post("installation", fixture_body("installation.created"))
    assert response.status_code == 200
    assert response.json == {"status": "ignored", "reason": "installation created: nothing to do"}
    assert hook.jobs == []


def test_unhandled_event_is_ignored(hook: Hook) -> None:
    response = hook.post("star", b'{"action": "created"}')
    assert response.status_code == 200
    assert response.json == {"status": "ignored", "reason": "unhandled event 'star'"}
    response = hook.post("pull_request", fixture_body("pull_request.opened", action="labeled"))
    assert response.json["status"] == "ignored"
    assert hook.jobs == []


def test_bot_sender_is_ignored(hook: Hook) -> None:
    body = fixture_body("pull_request.opened", sender={"login": "renovate[bot]", "type": "Bot"})
    response = hook.post("pull_request", body)
    assert response.status_code == 200
    assert response.json == {"status": "ignored", "reason": "sender 'renovate[bot]' is a bot"}
    assert hook.jobs == []


def _draft_body() -> bytes:
    payload = json.loads(fixture_body("pull_request.opened"))
    payload["pull_request"]["draft"] = True
    return json.dumps(payload).encode()


def test_drafts_are_queued_for_the_worker_to_decide_by_repo_config(hook: Hook) -> None:
    response = hook.post("pull_request", _draft_body())
    assert response.status_code == 202
    assert [j.kind for j in hook.jobs] == ["auto"]


@pytest.mark.parametrize(
    ("fixture", "action", "kind", "before"),
    [
        ("pull_request.opened", "opened", "auto", None),
        ("pull_request.reopened", "reopened", "auto", None),
        ("pull_request.opened", "ready_for_review", "auto", None),
        ("pull_request.synchronize", "synchronize", "incremental", BEFORE),
    ],
)
def test_pull_request_actions_queue_the_right_job(
    hook: Hook, fixture: str, action: str, kind: str, before: str | None
) -> None:
    delivery = str(uuid.uuid4())
    response = hook.post("pull_request", fixture_body(fixture, action=action), delivery=delivery)
    expected = Job(
        kind=kind,  # type: ignore[arg-type]
        repo="Codertocat/Hello-World",
        installation_id=1,
        pr_number=2,
        head_sha=HEAD,
        before_sha=before,
        delivery_id=delivery,
        sender="Codertocat",
    )
    assert response.status_code == 202
    assert response.json == {"status": "queued", "job": expected.to_dict(), "queue": "reviews"}
    assert hook.jobs == [expected]


# --- dedupe ------------------------------------------------------------------


def test_duplicate_delivery_is_enqueued_once(hook: Hook) -> None:
    body = fixture_body("pull_request.opened")
    first = hook.post("pull_request", body, delivery="delivery-1")
    again = hook.post("pull_request", body, delivery="delivery-1")
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json["status"] == "duplicate"
    assert len(hook.jobs) == 1


def test_claims_get_the_full_ttl_once_queued(hook: Hook) -> None:
    hook.post("pull_request", fixture_body("pull_request.opened"), delivery="delivery-ttl")
    delivery_ttl = hook.redis.ttl(f"{hook.prefix}:delivery:delivery-ttl")
    job_ttl = hook.redis.ttl(f"{hook.prefix}:job:{hook.jobs[0].key}")
    assert CLAIM_PENDING_TTL < delivery_ttl <= DELIVERY_DEDUPE_TTL
    assert CLAIM_PENDING_TTL < job_ttl <= JOB_DEDUPE_TTL


def test_same_head_sha_with_a_new_delivery_is_enqueued_once(hook: Hook) -> None:
    body = fixture_body("pull_request.opened")
    first = hook.post("pull_request", body, delivery="delivery-a")
    second = hook.post("pull_request", body, delivery="delivery-b")
    reopened = hook.post("pull_request", fixture_body("pull_request.reopened"))
    assert first.status_code == 202
    assert (second.status_code, second.json["status"]) == (200, "duplicate")
    assert reopened.json["status"] == "duplicate"
    assert len(hook.jobs) == 1
    # a new head sha is a new job
    new_head = fixture_body("pull_request.synchronize", after="b" * 40)
    assert hook.post("pull_request", new_head).status_code == 202
    assert len(hook.jobs) == 2


def test_enqueue_failure_is_503_and_a_redelivery_succeeds(
    make_hook: Callable[..., Hook],
) -> None:
    queued: list[Job] = []
    calls = {"n": 0}

    def flaky(job: Job) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("broker down")
        queued.append(job)

    hook = make_hook(enqueue=flaky)
    body = fixture_body("pull_request.synchronize")
    failed = hook.post("pull_request", body, delivery="redelivered")
    assert failed.status_code == 503
    assert failed.json["status"] == "error"
    assert hook.keys() == []  # both claims released
    again = hook.post("pull_request", body, delivery="redelivered")
    assert again.status_code == 202
    assert len(queued) == 1 and queued[0].delivery_id == "redelivered"


def test_unexpected_error_is_503_not_500(dedupe_redis: redis.Redis) -> None:
    """Redis refuses the job claim (an ACL user that may write delivery keys only)."""
    prefix = f"test-reviewbot-{uuid.uuid4().hex}"
    user = f"reviewbot-test-{uuid.uuid4().hex[:8]}"
    dedupe_redis.acl_setuser(
        user, enabled=True, nopass=True, keys=[f"{prefix}:delivery:*"], commands=["+@all"]
    )
    limited = redis.Redis.from_url(redis_url(DEDUPE_DB), username=user, password="unused")
    try:
        app = create_app(
            Settings(webhook_secrets=(SECRET,)),
            enqueue=lambda job: None,
            redis_client=limited,
            dedupe_prefix=prefix,
        )
        body = fixture_body("pull_request.opened")
        response = app.test_client().post(
            "/webhook", data=body, headers=headers("pull_request", body, delivery="boom")
        )
        assert response.status_code == 503
        assert response.json["status"] == "error"
        assert list(dedupe_redis.scan_iter(f"{prefix}:*")) == []  # delivery claim released
    finally:
        limited.close()
        dedupe_redis.acl_deluser(user)


def test_redis_down_is_503(hook: Hook) -> None:
    app = create_app(
        Settings(webhook_secrets=(SECRET,), redis_url=DEAD_REDIS), enqueue=hook.jobs.append
    )
    client = app.test_client()
    body = fixture_body("pull_request.opened")
    response = client.post("/webhook", data=body, headers=headers("pull_request", body))
    assert response.status_code == 503
    assert hook.jobs == []


# --- health ------------------------------------------------------------------


def test_healthz_with_redis_up(hook: Hook) -> None:
    response = hook.client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok", "redis": True})


def test_healthz_with_redis_down() -> None:
    app = create_app(
        Settings(webhook_secrets=(SECRET,), redis_url=DEAD_REDIS), enqueue=lambda job: None
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "redis": False}


def test_create_app_requires_a_webhook_secret() -> None:
    from reviewbot.settings.server import SettingsError

    with pytest.raises(SettingsError, match="REVIEWBOT_WEBHOOK_SECRET"):
        create_app(Settings(), enqueue=lambda job: None)


# --- real HTTP ---------------------------------------------------------------


def test_over_real_http(hook: Hook) -> None:
    server = make_server("127.0.0.1", 0, hook.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        body = fixture_body("pull_request.synchronize")
        conn.request("POST", "/webhook", body=body, headers=headers("pull_request", body))
        queued = conn.getresponse()
        assert queued.status == 202
        assert json.loads(queued.read())["job"]["kind"] == "incremental"
        # same keep-alive connection: a tampered body is refused
        conn.request("POST", "/webhook", body=body + b" ", headers=headers("pull_request", body))
        refused = conn.getresponse()
        assert refused.status == 401
        refused.read()
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [j.kind for j in hook.jobs] == ["incremental"]


# --- the default Celery path, real Redis broker ------------------------------


def _messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def test_default_enqueue_sends_the_task_to_the_reviews_queue(
    broker: tuple[str, redis.Redis], dedupe_redis: redis.Redis
) -> None:
    url, client = broker
    prefix = f"test-reviewbot-{uuid.uuid4().hex}"
    app = create_app(
        Settings(webhook_secrets=(SECRET,), redis_url=url),
        redis_client=dedupe_redis,
        dedupe_prefix=prefix,
    )
    try:
        body = fixture_body("pull_request.opened")
        response = app.test_client().post(
            "/webhook", data=body, headers=headers("pull_request", body)
        )
        assert response.status_code == 202
        assert client.llen(QUEUE_REVIEWS) == 1
        assert client.llen(QUEUE_INTERACTIVE) == 0
        (message,) = _messages(client, QUEUE_REVIEWS)
        assert message["headers"]["task"] == TASK_RUN_JOB
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert args == [response.json["job"]]
        assert Job.from_dict(args[0]).head_sha == HEAD
    finally:
        for key in dedupe_redis.scan_iter(f"{prefix}:*"):
            dedupe_redis.delete(key)


def test_interactive_jobs_go_to_the_interactive_queue(broker: tuple[str, redis.Redis]) -> None:
    url, client = broker
    job = Job("ask", "o/r", 1, 3, HEAD, comment_id=99, args="why?", comment_type="review")
    CeleryEnqueuer(url)(job)
    assert client.llen(QUEUE_INTERACTIVE) == 1
    assert client.llen(QUEUE_REVIEWS) == 0
    (message,) = _messages(client, QUEUE_INTERACTIVE)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert Job.from_dict(args[0]) == job


def test_broker_down_is_503_and_claims_are_released(
    dedupe_redis: redis.Redis,
) -> None:
    prefix = f"test-reviewbot-{uuid.uuid4().hex}"
    app = create_app(
        Settings(webhook_secrets=(SECRET,), redis_url=DEAD_REDIS),
        redis_client=dedupe_redis,
        dedupe_prefix=prefix,
    )
    body = fixture_body("pull_request.opened")
    response = app.test_client().post("/webhook", data=body, headers=headers("pull_request", body))
    assert response.status_code == 503
    assert list(dedupe_redis.scan_iter(f"{prefix}:*")) == []
