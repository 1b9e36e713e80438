"""Failures of what a job depends on that are worth retrying later (pure).

:class:`TransientError` is what the job queue retries (with backoff, or after
``retry_after`` seconds when the other side said): GitHub's 5xx and rate limits
(:class:`reviewbot.github.errors.TransientGitHubError`) and an inference server that
does not answer (:class:`reviewbot.model.remote.InferenceUnavailable`). The runners
let it through, so a job's check run stays in progress for the retry.
"""

from __future__ import annotations


class TransientError(Exception):
    """A failure worth retrying later; ``retry_after`` seconds when the other side said."""

    retry_after: float | None = None
    reason = "transient"
    """What failed, for the worker's retry metrics (``github``, ``model-server``)."""
