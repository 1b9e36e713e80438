"""GitHub's refusals as two error types, and secrets kept out of messages and logs (pure).

- :class:`TransientGitHubError` (a :class:`GitHubError`): 5xx, rate limits
  (403/429 primary or secondary), network errors: worth retrying later;
  ``retry_after`` tells the job queue when, when GitHub said.
- :class:`GitHubError`: any other refusal (4xx), with a clear message.

Tokens, JWTs and the private key never appear in messages; a log filter also
scrubs them from PyGithub's debug logs.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from reviewbot.jobs.transient import TransientError

# --- secrets stay out of logs ----------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'("token"\s*:\s*")[^"]*(")'), r"\1***\2"),
    (re.compile(r"\b(gh[opsur]_|github_pat_|v1\.)[A-Za-z0-9_]{8,}"), r"\1***"),
    (re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*"), "***jwt***"),
    (re.compile(r"(Bearer\s+)[\w.~+/=-]{8,}", re.I), r"\1***"),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        "***private key***",
    ),
)


def redact(text: str) -> str:
    """``text`` with installation tokens, JWTs and private keys masked."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class _RedactSecrets(logging.Filter):
    """Masks secrets in records (PyGithub logs whole response bodies at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_REDACT = _RedactSecrets()
for _name in (
    "github.Requester",
    "github.GithubRetry",
    "urllib3.connectionpool",
    "reviewbot.github.client",
    "reviewbot.github.app",
):
    logging.getLogger(_name).addFilter(_REDACT)


class GitHubError(Exception):
    """GitHub refused a request (or it could not be made); the message is safe to show."""

    user_facing = True

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(redact(message))


class TransientGitHubError(GitHubError, TransientError):
    """A failure worth retrying later; ``retry_after`` seconds when GitHub said so."""

    reason = "github"

    def __init__(
        self, message: str, retry_after: float | None = None, status: int | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status)


class DiffTooLargeError(GitHubError):
    """GitHub will not render the diff (HTTP 406: too many files or lines)."""


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def retry_after_seconds(
    headers: Mapping[str, Any] | None, now: float | None = None
) -> float | None:
    """Seconds to wait, from ``Retry-After`` or an exhausted ``x-ratelimit-reset``."""
    now = time.time() if now is None else now
    value = header(headers, "retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            return max(0.0, when.timestamp() - now)
    reset = header(headers, "x-ratelimit-reset")
    if header(headers, "x-ratelimit-remaining") == "0" and reset is not None:
        try:
            return max(0.0, float(reset) - now) + 1.0
        except ValueError:
            return None
    return None
