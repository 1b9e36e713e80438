"""GitHub webhook deliveries → jobs, sans I/O (in the style of gidgethub's ``sansio``).

:func:`parse_delivery` holds every rule of the webhook endpoint: given a delivery's
headers, raw body and the webhook secrets, it returns the :class:`~reviewbot.jobs.job.Job`
to queue, an :class:`Ignored` (answered 2xx, with the reason) or a :class:`Rejected`
(the HTTP status and why). The web server only transports: it reads the request,
calls this, and queues or answers (:mod:`reviewbot.server.app`).

Inside, :func:`verify_signature` checks ``X-Hub-Signature-256`` before anything
reads the body, and :func:`parse_event` turns a verified event into a job. Each
event name has one handler in :data:`HANDLERS`; a new event is one more entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reviewbot.github.data import BotIdentity
from reviewbot.jobs.commands import parse_command
from reviewbot.jobs.job import CommentType, Job, JobKind
from reviewbot.settings.defaults import (
    BOT_LOGIN_SUFFIX,
    MAX_WEBHOOK_BODY_BYTES,
    TRUSTED_ASSOCIATIONS,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
CONTENT_TYPE_HEADER = "Content-Type"
JSON_MIMETYPE = "application/json"
SIGNATURE_PREFIX = "sha256="
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

#: pull_request actions that start a full review, and the one that starts an incremental one.
FULL_REVIEW_ACTIONS = frozenset({"opened", "reopened", "ready_for_review"})
INCREMENTAL_ACTIONS = frozenset({"synchronize"})


class PayloadError(ValueError):
    """The payload lacks a field the event needs (the web layer answers 400)."""


@dataclass(frozen=True)
class Ignored:
    """A delivery that starts no job.

    ``status`` is what the web layer answers (``"ignored"``, or ``"pong"`` for a
    ping); ``handled`` is False for events and actions reviewbot does not know.
    """

    reason: str
    status: str = "ignored"
    handled: bool = True


@dataclass(frozen=True)
class Rejected:
    """A delivery refused with HTTP ``status`` (4xx) for ``reason`` (shown to the sender)."""

    status: int
    reason: str


@dataclass(frozen=True)
class EventConfig:
    """Server-wide event handling: reviewbot's own account (its comments never run).

    ``bot_login`` / ``bot_id``: the account, as the web process learned it from
    GitHub (the App's ``{slug}[bot]`` and its user id) or as configured; matched by
    id when known, else by login (case-insensitively).
    Drafts are not decided here: whether to review one is the repository's choice
    (``drafts`` in ``.github/reviewbot.toml``), which only the worker reads.
    """

    bot_login: str | None = None
    bot_id: int | None = None


Handler = Callable[[Mapping[str, Any], str, EventConfig], "Job | Ignored"]


def verify_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True if ``header`` is ``sha256=<hex HMAC-SHA256 of body>`` under any of ``secrets``.

    Compared in constant time; a missing, malformed, SHA-1 or differently
    prefixed header is False.
    """
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    try:
        provided = header.encode("ascii")
    except UnicodeEncodeError:
        return False
    matched = False
    for secret in secrets:
        if not secret:
            continue
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        expected = (SIGNATURE_PREFIX + digest).encode("ascii")
        matched |= hmac.compare_digest(expected, provided)
    return matched


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def parse_delivery(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    config: EventConfig = EventConfig(),
) -> Job | Ignored | Rejected:
    """What to do with one webhook delivery: a job to queue, ignore it, or reject it.

    The rules, in order: a body over GitHub's 25 MB cap → 413; a missing or wrong
    signature → 401 (nothing else is read before it is verified); a content type
    other than JSON → 415; no event or delivery id → 400; a body that is not JSON,
    or a payload without a field its event needs → 400. Header names are matched
    case-insensitively.
    """
    if len(body) > MAX_WEBHOOK_BODY_BYTES:
        return Rejected(413, f"body over {MAX_WEBHOOK_BODY_BYTES} bytes")
    h = {k.lower(): v for k, v in headers.items()}
    if not verify_signature(body, h.get(SIGNATURE_HEADER.lower()), secrets):
        return Rejected(401, "invalid or missing signature")
    mimetype = h.get(CONTENT_TYPE_HEADER.lower(), "").split(";")[0].strip().lower()
    if mimetype != JSON_MIMETYPE:
        return Rejected(
            415, "unsupported content type: set the webhook's content type to application/json"
        )
    event = h.get(EVENT_HEADER.lower(), "").strip()
    delivery_id = h.get(DELIVERY_HEADER.lower(), "").strip()
    if not event or not delivery_id:
        return Rejected(400, f"missing {EVENT_HEADER} or {DELIVERY_HEADER} header")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Rejected(400, "malformed JSON body")
    try:
        return parse_event(event, payload, delivery_id, config)
    except PayloadError as exc:
        return Rejected(400, str(exc))


def parse_event(
    event: str, payload: Mapping[str, Any], delivery_id: str, config: EventConfig
) -> Job | Ignored:
    """The job a delivery starts, or why it starts none; PayloadError if malformed."""
    if not isinstance(payload, Mapping):
        raise PayloadError("payload is not a JSON object")
    handler = HANDLERS.get(event)
    if handler is None:
        return Ignored(f"unhandled event {event!r}", handled=False)
    return handler(payload, delivery_id, config)


def on_ping(payload: Mapping[str, Any], delivery_id: str, config: EventConfig) -> Ignored:
    """GitHub's hook test: answered with a pong."""
    return Ignored("ping", status="pong")


def on_installation(payload: Mapping[str, Any], delivery_id: str, config: EventConfig) -> Ignored:
    """App installed, removed, suspended...: nothing to queue (tokens are per job)."""
    action = _field(payload, "action", str)
    return Ignored(f"installation {action}: nothing to do")


def on_pull_request(
    payload: Mapping[str, Any], delivery_id: str, config: EventConfig
) -> Job | Ignored:
    """Opened / reopened / ready for review → full review; synchronize → incremental."""
    action = _field(payload, "action", str)
    if action in FULL_REVIEW_ACTIONS:
        kind: JobKind = "auto"
    elif action in INCREMENTAL_ACTIONS:
        kind = "incremental"
    elif action == "closed":
        return Ignored("pull request closed")
    else:
        return Ignored(f"unhandled event 'pull_request' action {action!r}", handled=False)
    pr = _field(payload, "pull_request", Mapping)
    head_sha = _sha(_field(payload, "pull_request.head.sha", str), "pull_request.head.sha")
    before_sha = None
    if kind == "incremental":
        before_sha = _sha(_field(payload, "before", str), "before")
        after = payload.get("after")
        head_sha = _sha(after, "after") if after else head_sha
    job = Job(
        kind=kind,
        repo=_field(payload, "repository.full_name", str),
        installation_id=_field(payload, "installation.id", int),
        pr_number=_field(payload, "pull_request.number", int),
        head_sha=head_sha,
        before_sha=before_sha,
        delivery_id=delivery_id,
        sender=_sender_login(payload),
    )
    return _skip_reason(payload, pr, config) or job


def on_issue_comment(
    payload: Mapping[str, Any], delivery_id: str, config: EventConfig
) -> Job | Ignored:
    """A slash command in a pull request's conversation tab."""
    issue = _field(payload, "issue", Mapping)
    if not isinstance(issue.get("pull_request"), Mapping):
        return Ignored("comment on an issue, not on a pull request")
    return _command_job(
        payload,
        delivery_id,
        config,
        comment_type="issue",
        pr_number=_field(payload, "issue.number", int),
        head_sha="",
        state=issue.get("state"),
    )


def on_pull_request_review_comment(
    payload: Mapping[str, Any], delivery_id: str, config: EventConfig
) -> Job | Ignored:
    """A slash command in an inline review thread."""
    return _command_job(
        payload,
        delivery_id,
        config,
        comment_type="review",
        pr_number=_field(payload, "pull_request.number", int),
        head_sha=_sha(_field(payload, "pull_request.head.sha", str), "pull_request.head.sha"),
        state=_field(payload, "pull_request", Mapping).get("state"),
    )


def _command_job(
    payload: Mapping[str, Any],
    delivery_id: str,
    config: EventConfig,
    *,
    comment_type: CommentType,
    pr_number: int,
    head_sha: str,
    state: Any,
) -> Job | Ignored:
    """The job of a created comment that starts with a command, or why there is none.

    Edited and deleted comments never run (a comment runs once, when created);
    neither do comments by bots, by reviewbot itself, or carrying its markers. A
    command that runs the model is queued only for an author GitHub associates with
    the repository (``author_association`` OWNER, MEMBER or COLLABORATOR).
    """
    action = _field(payload, "action", str)
    if action != "created":
        return Ignored(f"comment {action}: only new comments run commands")
    body = _field(payload, "comment.body", str)
    comment_id = _field(payload, "comment.id", int)
    author = _field(payload, "comment.user", Mapping)
    bot = _bot_reason(payload.get("sender"), config) or _bot_reason(author, config)
    if bot:
        return Ignored(bot)
    command = parse_command(body)
    if command is None:
        return Ignored("comment carries no command")
    if state == "closed":
        return Ignored("pull request is closed")
    association = payload["comment"].get("author_association")
    if command.spec.roles is not None and association not in TRUSTED_ASSOCIATIONS:
        # An outsider cannot queue model work; the worker still checks the role.
        login = author.get("login")
        return Ignored(
            f"/{command.name} by {login!r} ({association or 'no association'}): model "
            f"commands are for {', '.join(sorted(TRUSTED_ASSOCIATIONS))} authors"
        )
    return Job(
        kind=command.kind,
        repo=_field(payload, "repository.full_name", str),
        installation_id=_field(payload, "installation.id", int),
        pr_number=pr_number,
        head_sha=head_sha,
        comment_id=comment_id,
        comment_type=comment_type,
        args=body,
        delivery_id=delivery_id,
        sender=_sender_login(payload),
    )


#: Event name → handler.
HANDLERS: dict[str, Handler] = {
    "ping": on_ping,
    "installation": on_installation,
    "pull_request": on_pull_request,
    "issue_comment": on_issue_comment,
    "pull_request_review_comment": on_pull_request_review_comment,
}


def _bot_reason(user: Any, config: EventConfig) -> str | None:
    """Why ``user`` (a payload user object) is a bot whose comments never run, if it is:
    reviewbot's own account (by id when known, else by login), or any other bot."""
    if not isinstance(user, Mapping):
        return None
    login = user.get("login")
    if config.bot_login and BotIdentity(config.bot_login, config.bot_id).is_author(user):
        return "sender is reviewbot itself"
    if user.get("type") == "Bot" or (isinstance(login, str) and login.endswith(BOT_LOGIN_SUFFIX)):
        return f"sender {login!r} is a bot"
    return None


def _skip_reason(
    payload: Mapping[str, Any], pr: Mapping[str, Any], config: EventConfig
) -> Ignored | None:
    """Why a well-formed pull_request delivery is not reviewed, if it is not."""
    bot = _bot_reason(payload.get("sender"), config)
    if bot:
        return Ignored(bot)
    if pr.get("state") == "closed":
        return Ignored("pull request is closed")
    return None


def _sender_login(payload: Mapping[str, Any]) -> str | None:
    sender = payload.get("sender")
    login = sender.get("login") if isinstance(sender, Mapping) else None
    return login if isinstance(login, str) else None


def _field(data: Mapping[str, Any], path: str, kind: type) -> Any:
    """The value at dotted ``path``, which must be a ``kind``; PayloadError otherwise."""
    value: Any = data
    for name in path.split("."):
        if not isinstance(value, Mapping) or name not in value:
            raise PayloadError(f"payload is missing {path}")
        value = value[name]
    # bool is an int subclass: a JSON true is no id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(f"payload field {path} is not a {kind.__name__}")
    return value


def _sha(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise PayloadError(f"payload field {name} is not a commit sha")
    return value
