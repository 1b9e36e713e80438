"""The webhook server (Flask app factory): GitHub deliveries → deduplicated jobs on the queue.

``POST /webhook`` hands the raw request to the sans-I/O event layer
(:func:`reviewbot.github.events.parse_delivery`), which holds every rule of what is
accepted; this module only transports: it answers a rejection or an ignored event,
and for a job claims the delivery and the job key in Redis (:mod:`.dedupe`), reacts
👀 to a command's comment and enqueues (:mod:`.queue`). A delivery that could not be
queued is answered 503 (its claims released) so a redelivery can succeed; the server
never answers 500 and never drops a job silently. ``GET /healthz`` reports whether
Redis answers; ``GET /metrics`` gives the Prometheus metrics (:mod:`reviewbot.metrics`):
deliveries by event and outcome, response times, the depth of each queue.

Run it with ``reviewbot serve`` (:func:`run_server`: gunicorn with worker timeouts) or
under your own gunicorn: ``gunicorn 'reviewbot.server.app:create_app_from_env()'``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from reviewbot import logs, metrics
from reviewbot.github.data import BotIdentity
from reviewbot.github.events import HANDLERS, EventConfig, Ignored, Rejected, parse_delivery
from reviewbot.jobs.commands import COMMANDS
from reviewbot.jobs.job import Job
from reviewbot.server.dedupe import Deduper
from reviewbot.settings.defaults import (
    ACTIVE_JOB_STALE_SECONDS,
    CLAIM_PENDING_TTL,
    DEDUPE_PREFIX,
    MAX_WEBHOOK_BODY_BYTES,
    OPEN_COMMAND_LIMIT,
    OPEN_COMMAND_WINDOW_SECONDS,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    WEB_THREADS,
    WEB_WORKER_TIMEOUT,
    WEB_WORKERS,
)
from reviewbot.settings.server import Settings, redact_url
from reviewbot.state.limits import ActiveJobs, RateLimit

log = logging.getLogger(__name__)

Enqueue = Callable[[Job], None]
#: Adds the 👀 "received" reaction to a command's comment; failures are logged only.
Acknowledge = Callable[[Job], None]
#: reviewbot's own GitHub account, or None while it is not known.
Identity = Callable[[], BotIdentity | None]
Answer = tuple[dict[str, Any], int]


def make_redis(url: str) -> redis.Redis:
    """A Redis client whose calls fail fast when the server is down."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )


class WebhookHandler:
    """What the ``/webhook`` route does with a delivery: parse it, then dedupe and enqueue."""

    def __init__(
        self,
        settings: Settings,
        deduper: Deduper,
        enqueue: Enqueue,
        acknowledge: Acknowledge | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.secrets = settings.webhook_secrets
        self.bot_login = settings.bot_login
        self.identity = identity
        self.deduper = deduper
        self.enqueue = enqueue
        self.acknowledge = acknowledge
        client, prefix = deduper.redis, deduper.prefix
        self.open_commands = RateLimit(
            client, OPEN_COMMAND_LIMIT, OPEN_COMMAND_WINDOW_SECONDS, prefix=prefix
        )
        self.active = ActiveJobs(
            client, settings.installation_max_jobs, ACTIVE_JOB_STALE_SECONDS, prefix=prefix
        )

    def handle(self, headers: Any, body: bytes) -> Answer:
        """The answer to one delivery (its headers and raw body); what is logged
        meanwhile carries the delivery id (and the job key, once known)."""
        with logs.context(delivery=_delivery(headers)):
            return self._handle(headers, body)

    def _handle(self, headers: Any, body: bytes) -> Answer:
        outcome = parse_delivery(headers, body, self.secrets, self.event_config())
        if isinstance(outcome, Rejected):
            level = logging.WARNING if outcome.status in (400, 401) else logging.INFO
            log.log(level, "webhook rejected (%d): %s", outcome.status, outcome.reason)
            return _error(outcome.reason, outcome.status)
        if isinstance(outcome, Ignored):
            level = logging.INFO if outcome.handled else logging.DEBUG
            log.log(level, "delivery %s: %s", _delivery(headers), outcome.reason)
            if outcome.status == "pong":
                return {"status": "pong"}, 200
            return {"status": outcome.status, "reason": outcome.reason}, 200
        with logs.context(job=outcome.key):
            return self._enqueue(outcome, outcome.delivery_id or "")

    def event_config(self) -> EventConfig:
        """reviewbot's own account for the event rules: as GitHub names it when the web
        has the App's credentials (``identity``), else the configured login."""
        found = self.identity() if self.identity is not None else None
        if found is None:
            return EventConfig(bot_login=self.bot_login)
        return EventConfig(bot_login=found.login, bot_id=found.id)

    def _enqueue(self, job: Job, delivery_id: str) -> Answer:
        """Claim the delivery and the job key, admit, enqueue, confirm; release on failure."""
        if job.interactive and COMMANDS[job.kind].roles is None:
            subject = f"{job.repo}#{job.pr_number}:{job.sender}"
            if not self.open_commands.hit(subject):
                log.info("delivery %s: /%s by %s rate limited", delivery_id, job.kind, job.sender)
                return {"status": "ignored", "reason": "rate limited: too many commands"}, 200
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
        try:
            admitted, active = self.active.admit(job.installation_id, job.key)
        except Exception:
            self._release(delivery_id, job.key)
            raise
        if not admitted:
            self._release(delivery_id, job.key)
            log.warning(
                "delivery %s: installation %d has %d jobs queued or running; refused %s",
                delivery_id,
                job.installation_id,
                active,
                job.key,
            )
            return _error(
                f"installation {job.installation_id} has {active} jobs queued or running "
                f"(the cap is {self.active.cap}); redeliver later",
                429,
            )
        if job.interactive:
            self._acknowledge(job)
        try:
            self.enqueue(job)
        except Exception:
            log.exception("delivery %s: could not enqueue job %s", delivery_id, job.key)
            self._release(delivery_id, job.key)
            self._unadmit(job)
            return _error("could not enqueue the job; retry the delivery", 503)
        self._confirm(delivery_id, job.key)
        log.info("delivery %s: queued job %s on %s", delivery_id, job.key, job.queue)
        return {"status": "queued", "job": job.to_dict(), "queue": job.queue}, 202

    def _acknowledge(self, job: Job) -> None:
        """👀 on the command's comment, before the job is queued (so a fast job's
        own reactions always come after it); the worker adds it if this fails."""
        if self.acknowledge is None:
            return
        try:
            self.acknowledge(job)
        except Exception as exc:
            log.warning("could not react to comment %s on %s: %s", job.comment_id, job.repo, exc)

    def _unadmit(self, job: Job) -> None:
        try:
            self.active.release(job.installation_id, job.key)
        except redis.RedisError as exc:
            log.warning("could not release %s from the installation's jobs: %s", job.key, exc)

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
    ``acknowledge``: a 👀 reaction through the GitHub App when the settings ask for
    it (``web_reactions``), else none (the worker reacts when it starts the job).
    When it acts as the App (``web_reactions``), the app also learns reviewbot's own
    account from GitHub at start (:mod:`reviewbot.server.identity`): deliveries that
    account sent are ignored by its user id.
    """
    settings.require_web()
    logs.hide(settings.secrets())
    client = redis_client if redis_client is not None else make_redis(settings.redis_url)
    if enqueue is None:
        from reviewbot.server.queue import CeleryEnqueuer

        enqueue = CeleryEnqueuer(settings.redis_url)
    if acknowledge is None and settings.web_reactions:
        from reviewbot.server.acknowledge import GitHubAcknowledger

        acknowledge = GitHubAcknowledger(settings)
    identity: Identity | None = None
    if settings.web_reactions and settings.app_id is not None and settings.private_key:
        # The web acts as the App only when asked to (web_reactions): then it also
        # learns who the App is; otherwise the configured login is all it knows.
        from reviewbot.server.identity import IdentityLookup

        identity = IdentityLookup(settings)
        identity()  # learned at start; a failure is logged and retried later
    handler = WebhookHandler(
        settings, Deduper(client, prefix=dedupe_prefix), enqueue, acknowledge, identity
    )
    app = Flask("reviewbot")
    # One byte over the cap: a chunked body (no Content-Length) is cut there by Werkzeug,
    # so parse_delivery sees it is too large (413) instead of a body cut at the cap
    # whose signature fails (401).
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BODY_BYTES + 1
    app.extensions["reviewbot"] = handler

    queues = metrics.QueueDepth(lambda: _queue_redis(settings.redis_url))

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        started = time.perf_counter()
        answer: Answer | None = None
        try:
            length = request.content_length
            if length is not None and length > MAX_WEBHOOK_BODY_BYTES:  # refused unread
                answer = _error(f"body over {MAX_WEBHOOK_BODY_BYTES} bytes", 413)
            else:
                answer = handler.handle(request.headers, request.get_data())
            return _json(answer)
        finally:  # an exception is answered 503 (below): "unavailable"
            outcome = metrics.delivery_outcome(*answer) if answer else "unavailable"
            event = _event(request.headers)
            metrics.web().delivery(event, outcome, time.perf_counter() - started)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body = metrics.exposition(queues)
        return Response(body, headers={"Content-Type": metrics.CONTENT_TYPE})

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
    """The app from ``REVIEWBOT_*`` variables (for gunicorn: for ``/metrics`` to add up
    its processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory and call
    :func:`reviewbot.metrics.mark_process_dead` from gunicorn's ``child_exit`` hook)."""
    logs.configure(logging.INFO)
    return create_app(Settings.from_env())


def run_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = WEB_WORKERS,
    timeout: int = WEB_WORKER_TIMEOUT,
) -> None:
    """Serve the webhook app with gunicorn (a production server) until stopped.

    ``workers`` processes of :data:`WEB_THREADS` threads each build their own app
    (Redis clients are not shared across a fork); a worker stuck for ``timeout``
    seconds is killed and replaced. Stops on SIGTERM or SIGINT.

    The processes keep their metrics in a fresh multiprocess directory, which
    ``/metrics`` adds up (a dead process's live gauges are dropped by the
    ``child_exit`` hook). With ``REVIEWBOT_LOG_FORMAT=json`` gunicorn's own lines
    (its error and access logs) are JSON objects too.
    """
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    fmt = logs.configure(service=True)  # again: an env file may have set the format
    logs.hide(settings.secrets())
    metrics.use_multiprocess("reviewbot-web-metrics-")

    class GunicornLogger(Logger):
        """gunicorn's error and access logs in the format of the other lines."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for logger in (self.error_log, self.access_log):
                for h in logger.handlers:
                    h.setFormatter(logs.formatter(fmt))
                    h.addFilter(logs.ContextFilter())

    def child_exit(server: Any, worker: Any) -> None:
        metrics.mark_process_dead(worker.pid)

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": WEB_THREADS,
        "timeout": timeout,
        "graceful_timeout": timeout,
        "accesslog": "-",
        "child_exit": child_exit,
    }
    if fmt == "json":
        options["logger_class"] = GunicornLogger

    class WebhookServer(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return create_app(settings)

    log.info("reviewbot webhook server on http://%s:%s/webhook (gunicorn)", host, port)
    WebhookServer().run()


def _delivery(headers: Any) -> str:
    return str(headers.get("X-GitHub-Delivery", "")).strip() or "?"


def _event(headers: Any) -> str:
    """The ``event`` label of a delivery: an event reviewbot knows, else ``other`` (the
    header is read before the signature is checked: no unbounded label values)."""
    event = str(headers.get("X-GitHub-Event", "")).strip()
    return event if event in HANDLERS else "other"


_queue_clients: dict[str, redis.Redis] = {}


def _queue_redis(url: str) -> redis.Redis:
    """The broker's Redis, for the queue depths (one client per URL and process)."""
    if url not in _queue_clients:
        _queue_clients[url] = make_redis(url)
    return _queue_clients[url]


def _error(message: str, code: int) -> Answer:
    return {"status": "error", "error": message}, code


def _json(answer: Answer) -> tuple[Response, int]:
    body, code = answer
    return jsonify(body), code
