"""The webhook server: GitHub deliveries → verified, deduplicated jobs on the queue.

``POST /webhook`` verifies ``X-Hub-Signature-256`` over the raw body before
anything else reads it, turns the event into a :class:`~reviewbot.jobs.Job`
(:mod:`reviewbot.events`), drops repeated deliveries and repeated jobs
(:mod:`reviewbot.dedupe`) and enqueues the rest. A delivery that could not be
queued is answered 503 (its claims released) so a redelivery can succeed; the
server never answers 500 and never drops a job silently. ``GET /healthz``
reports whether Redis answers.

Run it with ``reviewbot serve`` (:func:`run_server`) or under gunicorn:
``gunicorn 'reviewbot.web:create_app_from_env()'``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from reviewbot.config import (
    ACK_TIMEOUT_SECONDS,
    CLAIM_PENDING_TTL,
    DEDUPE_PREFIX,
    ENQUEUE_MAX_RETRIES,
    ENQUEUE_RETRY_INTERVAL,
    MAX_WEBHOOK_BODY_BYTES,
    QUEUE_INTERACTIVE,
    QUEUE_REVIEWS,
    REACTION_RECEIVED,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    TASK_RUN_JOB,
    GitHubSettings,
)
from reviewbot.dedupe import Deduper
from reviewbot.events import EventConfig, Ignored, PayloadError, parse_event, verify_signature
from reviewbot.jobs import Job
from reviewbot.settings import Settings, redact_url

log = logging.getLogger(__name__)

Enqueue = Callable[[Job], None]
#: Adds the 👀 "received" reaction to a command's comment; failures are logged only.
Acknowledge = Callable[[Job], None]
Answer = tuple[dict[str, Any], int]

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
JSON_MIMETYPE = "application/json"


def queue_for(job: Job) -> str:
    """The Celery queue of ``job``: interactive commands go before automatic reviews."""
    return QUEUE_INTERACTIVE if job.interactive else QUEUE_REVIEWS


class CeleryEnqueuer:
    """Sends jobs to the workers by task name; imports no worker or model code."""

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self.celery = Celery("reviewbot-web", broker=broker_url, backend=broker_url)
        self.celery.conf.update(
            broker_connection_timeout=REDIS_CONNECT_TIMEOUT,
            broker_transport_options={
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
            },
            task_publish_retry_policy={
                "max_retries": ENQUEUE_MAX_RETRIES,
                "interval_start": 0,
                "interval_step": ENQUEUE_RETRY_INTERVAL,
                "interval_max": ENQUEUE_RETRY_INTERVAL,
            },
            task_serializer="json",
        )

    def __call__(self, job: Job) -> None:
        """Publish ``job`` (raises kombu's OperationalError when the broker is down).

        ``ignore_result``: the web process never reads results, and a pending
        result would keep a Redis pub/sub subscription open per job.
        """
        self.celery.send_task(
            TASK_RUN_JOB, args=[job.to_dict()], queue=queue_for(job), ignore_result=True
        )


class GitHubAcknowledger:
    """Reacts 👀 to a command comment at once, as the GitHub App (one short call).

    Used when the web server has the App's credentials; otherwise the worker
    adds the reaction when it starts the job.
    """

    def __init__(self, settings: Settings) -> None:
        from reviewbot.github_client import GitHubApp

        assert settings.app_id is not None and settings.private_key is not None
        self.app = GitHubApp(
            settings.app_id,
            settings.private_key,
            settings.github_api_url,
            GitHubSettings(
                timeout_seconds=ACK_TIMEOUT_SECONDS, attempts=1, seconds_between_writes=0
            ),
        )

    def __call__(self, job: Job) -> None:
        assert job.comment_type is not None and job.comment_id is not None
        with self.app.installation(job.installation_id) as gh:
            gh.add_reaction(job.repo, job.comment_type, job.comment_id, REACTION_RECEIVED)


def make_redis(url: str) -> redis.Redis:
    """A Redis client whose calls fail fast when the server is down."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )


class WebhookHandler:
    """The webhook logic behind the Flask route (signature → event → dedupe → enqueue)."""

    def __init__(
        self,
        settings: Settings,
        deduper: Deduper,
        enqueue: Enqueue,
        acknowledge: Acknowledge | None = None,
    ) -> None:
        self.secrets = settings.webhook_secrets
        self.acknowledge = acknowledge
        # Drafts are queued: whether to review one is the repository's choice
        # (`drafts` in .github/reviewbot.toml, default REVIEWBOT_REVIEW_DRAFTS),
        # which only the worker reads.
        self.event_config = EventConfig(review_drafts=True, bot_login=settings.bot_login)
        self.deduper = deduper
        self.enqueue = enqueue

    def handle(self) -> Answer:
        """Answer the current request (body size already checked by the caller)."""
        body = request.get_data(cache=True)
        if not verify_signature(body, request.headers.get(SIGNATURE_HEADER), self.secrets):
            log.warning("webhook rejected: missing or invalid %s", SIGNATURE_HEADER)
            return _error("invalid or missing signature", 401)
        if request.mimetype != JSON_MIMETYPE:
            return _error(
                "unsupported content type: set the webhook's content type to application/json",
                415,
            )
        event = request.headers.get(EVENT_HEADER, "").strip()
        delivery_id = request.headers.get(DELIVERY_HEADER, "").strip()
        if not event or not delivery_id:
            return _error(f"missing {EVENT_HEADER} or {DELIVERY_HEADER} header", 400)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error("malformed JSON body", 400)
        try:
            outcome = parse_event(event, payload, delivery_id, self.event_config)
        except PayloadError as exc:
            log.warning("delivery %s (%s): bad payload: %s", delivery_id, event, exc)
            return _error(str(exc), 400)
        if isinstance(outcome, Ignored):
            return self._ignored(event, delivery_id, outcome)
        return self._enqueue(outcome, delivery_id)

    def _ignored(self, event: str, delivery_id: str, ignored: Ignored) -> Answer:
        level = logging.INFO if ignored.handled else logging.DEBUG
        log.log(level, "delivery %s (%s): %s", delivery_id, event, ignored.reason)
        if ignored.status == "pong":
            return {"status": "pong"}, 200
        return {"status": ignored.status, "reason": ignored.reason}, 200

    def _enqueue(self, job: Job, delivery_id: str) -> Answer:
        """Claim the delivery and the job key, enqueue, confirm; release on failure."""
        if self.deduper.seen_delivery(delivery_id, ttl=CLAIM_PENDING_TTL):
            log.info("delivery %s: duplicate delivery", delivery_id)
            return {"status": "duplicate", "reason": "delivery already received"}, 200
        try:
            claimed = self.deduper.claim_job(job.key, ttl=CLAIM_PENDING_TTL)
        except Exception:
            self._release(delivery_id, None)
            raise
        if not claimed:
            self._confirm(delivery_id, None)
            log.info("delivery %s: job %s already queued", delivery_id, job.key)
            return {"status": "duplicate", "reason": "job already queued", "key": job.key}, 200
        if job.interactive:
            self._acknowledge(job)
        try:
            self.enqueue(job)
        except Exception:
            log.exception("delivery %s: could not enqueue job %s", delivery_id, job.key)
            self._release(delivery_id, job.key)
            return _error("could not enqueue the job; retry the delivery", 503)
        self._confirm(delivery_id, job.key)
        log.info("delivery %s: queued job %s on %s", delivery_id, job.key, queue_for(job))
        return {"status": "queued", "job": job.to_dict(), "queue": queue_for(job)}, 202

    def _acknowledge(self, job: Job) -> None:
        """👀 on the command's comment, before the job is queued (so a fast job's
        own reactions always come after it); the worker adds it if this fails."""
        if self.acknowledge is None:
            return
        try:
            self.acknowledge(job)
        except Exception as exc:
            log.warning("could not react to comment %s on %s: %s", job.comment_id, job.repo, exc)

    def _confirm(self, delivery_id: str, job_key: str | None) -> None:
        try:
            self.deduper.confirm(delivery_id, job_key)
        except redis.RedisError as exc:
            # The claims expire after CLAIM_PENDING_TTL: a later redelivery would
            # queue the job again, which the idempotent review posting tolerates.
            log.warning("delivery %s: could not extend dedupe claims: %s", delivery_id, exc)

    def _release(self, delivery_id: str, job_key: str | None) -> None:
        try:
            if job_key is not None:
                self.deduper.release_job(job_key)
            self.deduper.release_delivery(delivery_id)
        except redis.RedisError as exc:
            log.warning(
                "delivery %s: could not release dedupe claims (they expire in %ss): %s",
                delivery_id,
                CLAIM_PENDING_TTL,
                exc,
            )


def create_app(
    settings: Settings,
    enqueue: Enqueue | None = None,
    redis_client: redis.Redis | None = None,
    *,
    dedupe_prefix: str = DEDUPE_PREFIX,
    acknowledge: Acknowledge | None = None,
) -> Flask:
    """The webhook Flask app.

    Default ``enqueue``: Celery ``send_task`` to ``settings.redis_url``; default
    ``redis_client`` (dedupe, health): one for ``settings.redis_url``; default
    ``acknowledge``: a 👀 reaction through the GitHub App when the settings carry
    its id and key, else none (the worker reacts when it starts the job).
    """
    settings.require_web()
    client = redis_client if redis_client is not None else make_redis(settings.redis_url)
    if acknowledge is None and settings.app_id is not None and settings.private_key:
        acknowledge = GitHubAcknowledger(settings)
    handler = WebhookHandler(
        settings,
        Deduper(client, prefix=dedupe_prefix),
        enqueue if enqueue is not None else CeleryEnqueuer(settings.redis_url),
        acknowledge,
    )
    app = Flask("reviewbot")
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BODY_BYTES
    app.extensions["reviewbot"] = handler

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        length = request.content_length
        if length is not None and length > MAX_WEBHOOK_BODY_BYTES:
            return _json(_error(f"body over {MAX_WEBHOOK_BODY_BYTES} bytes", 413))
        return _json(handler.handle())

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            alive = bool(client.ping())
        except redis.RedisError as exc:
            log.warning("healthz: redis unavailable: %s", exc)
            alive = False
        status = "ok" if alive else "unavailable"
        return _json(({"status": status, "redis": alive}, 200 if alive else 503))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        return _json(_error(exc.description or exc.name, code))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _json(_error("temporary failure; retry the delivery", 503))

    log.info("webhook app ready (redis %s)", redact_url(settings.redis_url))
    return app


def create_app_from_env() -> Flask:
    """The app from ``REVIEWBOT_*`` variables (for gunicorn)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(Settings.from_env())


def run_server(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the webhook app with werkzeug's threaded server until interrupted."""
    from werkzeug.serving import make_server

    server = make_server(host, port, create_app(settings), threaded=True)
    log.info("reviewbot webhook server on http://%s:%s/webhook", host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.server_close()


def _error(message: str, code: int) -> Answer:
    return {"status": "error", "error": message}, code


def _json(answer: Answer) -> tuple[Response, int]:
    body, code = answer
    return jsonify(body), code
