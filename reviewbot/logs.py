"""How every reviewbot process logs: text lines, or one JSON object per line.

``REVIEWBOT_LOG_FORMAT=json`` (default ``text``) switches ``reviewbot serve``, its
gunicorn processes, ``reviewbot worker`` and the worker's job process to JSON lines.
While a process handles a delivery or runs a job (:func:`context`), every line it
logs carries the delivery id and the job key (``delivery``, ``job``): contextvars
read by :class:`ContextFilter`. The formatters mask the secret values registered
with :func:`hide` (webhook secrets, the App's key, Redis passwords) wherever they
appear, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from reviewbot.settings.server import log_format

#: The delivery (``X-GitHub-Delivery``) and the job key being handled, if any.
DELIVERY: ContextVar[str | None] = ContextVar("reviewbot_delivery", default=None)
JOB: ContextVar[str | None] = ContextVar("reviewbot_job", default=None)

#: The text format of services (a worker's job runs in its child: the process name).
SERVICE_TEXT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
#: The text format of the command line's other commands.
COMMAND_TEXT = "%(levelname)s %(name)s: %(message)s"
#: Delivery ids come from the request, before its signature is checked: kept short.
_MAX_ID_CHARS = 100
_MASK = "***"
#: Values shorter than this are not masked (they would mask ordinary words).
_MIN_SECRET_CHARS = 6

_secrets: set[str] = set()


def hide(values: Iterable[str]) -> None:
    """Mask ``values`` (secrets) in every line this process logs from now on."""
    _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_CHARS)


def mask(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


@contextmanager
def context(job: str | None = None, delivery: str | None = None) -> Iterator[None]:
    """Within the block, log lines carry ``job`` and ``delivery`` (those given)."""
    tokens = []
    if job is not None:
        tokens.append((JOB, JOB.set(job)))
    if delivery is not None:
        tokens.append((DELIVERY, DELIVERY.set(delivery[:_MAX_ID_CHARS])))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds the current delivery id and job key to each record (``delivery``, ``job``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job", None) is None:
            record.job = JOB.get()
        if getattr(record, "delivery", None) is None:
            record.delivery = DELIVERY.get()
        return True


class TextFormatter(logging.Formatter):
    """The classic text line, secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, the delivery
    and job being handled, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key in ("job", "delivery"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return mask(json.dumps(entry, ensure_ascii=False, default=str))


def json_line(message: str, level: str = "WARNING", logger: str = "reviewbot") -> str:
    """A JSON log line written without the logging machinery (from a signal handler)."""
    entry = {
        "time": _timestamp(time.time()),
        "level": level,
        "logger": logger,
        "pid": os.getpid(),
        "message": mask(message),
    }
    return json.dumps(entry, ensure_ascii=False)


def say_json(msg: str, f: TextIO | None = sys.__stderr__) -> None:
    """Celery's ``safe_say`` (console notices from its signal handlers) as a JSON line."""
    stream = f or sys.__stderr__
    if stream is None:
        return
    try:
        stream.write(json_line(str(msg), logger="celery.apps.worker") + "\n")
        stream.flush()
    except (OSError, ValueError):  # the console is gone: as Celery's own safe_say
        pass


def formatter(fmt: str, service: bool = True) -> logging.Formatter:
    """The formatter of log format ``fmt`` (``text`` or ``json``)."""
    if fmt == "json":
        return JsonFormatter()
    return TextFormatter(SERVICE_TEXT if service else COMMAND_TEXT)


def configure(
    level: int | None = None,
    service: bool = True,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Set up the root logger in the format ``REVIEWBOT_LOG_FORMAT`` names; again
    (after an env file was read) to switch it. Returns the format used.

    ``level``: None keeps the current level (WARNING on first use).
    """
    fmt = log_format(environ)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_reviewbot", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._reviewbot = True  # type: ignore[attr-defined]
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    elif getattr(handler.stream, "closed", False):
        # main ran before in this process and its stderr is gone (tests run main many
        # times): write to today's. Never rebound otherwise: inside a Celery worker,
        # sys.stderr is Celery's proxy into logging itself.
        handler.stream = sys.stderr  # (setStream would flush the closed one first)
    handler.setFormatter(formatter(fmt, service))
    if level is not None:
        root.setLevel(level)
    # Python warnings (a library's deprecation notice) are log lines too, in JSON.
    logging.captureWarnings(fmt == "json")
    return fmt


def json_mode(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process logs JSON lines."""
    return log_format(environ) == "json"


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"
