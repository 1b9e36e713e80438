"""Per-installation fairness in the worker: token budgets and the installation's job count.

The web process admits at most ``installation_max_jobs`` jobs per installation
(:class:`reviewbot.state.limits.ActiveJobs`); the worker :func:`release`\\ s a job when
it ends. Before a job runs, :func:`token_wait` says how long its installation must
wait for its prompt-token budget; :func:`metered` charges the prompt tokens each
generate call sends through the model to the installation.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import redis

from reviewbot.jobs.job import Job
from reviewbot.review.prompts import Renderer
from reviewbot.runners.ports import EngineProvider, ModelPort
from reviewbot.settings.defaults import (
    ACTIVE_JOB_STALE_SECONDS,
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    TOKEN_BUDGET_WINDOW_SECONDS,
)
from reviewbot.settings.server import Settings
from reviewbot.state.limits import ActiveJobs, TokenBudget

log = logging.getLogger(__name__)


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT, socket_timeout=REDIS_SOCKET_TIMEOUT
    )


def budget(settings: Settings) -> TokenBudget:
    return TokenBudget(
        _redis(settings.redis_url),
        settings.installation_token_budget,
        TOKEN_BUDGET_WINDOW_SECONDS,
    )


def token_wait(settings: Settings, job: Job) -> float:
    """Seconds the job's installation must wait for its token budget (0: run now)."""
    return budget(settings).wait(job.installation_id)


def release(settings: Settings, job: Job) -> None:
    """The job ended: it no longer counts against its installation's cap (best effort)."""
    active = ActiveJobs(
        _redis(settings.redis_url), settings.installation_max_jobs, ACTIVE_JOB_STALE_SECONDS
    )
    try:
        active.release(job.installation_id, job.key)
    except redis.RedisError as exc:  # the entry goes stale on its own
        log.warning("job %s: could not release it from its installation's count: %s", job.key, exc)


class MeteredModel:
    """A model whose generate and score calls charge their prompt tokens to an installation."""

    def __init__(self, model: Any, tokens: TokenBudget, installation_id: int) -> None:
        self.model = model
        self.renderer: Renderer = model.renderer
        self.model_name: str = model.model_name
        self.adapter: str | None = model.adapter
        self.tokens = tokens
        self.installation_id = installation_id

    @property
    def can_score(self) -> bool:
        """Whether the model can score (see :func:`reviewbot.runners.ports.rating`)."""
        return bool(getattr(self.model, "can_score", True))

    def generate(self, prompts: list[str]) -> list[str]:
        out = self.model.generate(prompts)
        stats = getattr(self.model, "last_stats", None)
        used = stats.prompt_tokens if stats is not None else sum(len(p) // 4 for p in prompts)
        total = self.tokens.charge(self.installation_id, used)
        log.debug("installation %d: %d prompt tokens this window", self.installation_id, total)
        return out

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """Score through the model; every token fed (prompt and completion) is charged."""
        out = self.model.score(prompts, completions)
        stats = getattr(self.model, "last_score_stats", None)
        used = (
            stats.prompt_tokens
            if stats is not None
            else sum((len(p) + len(c)) // 4 for p, c in zip(prompts, completions, strict=True))
        )
        total = self.tokens.charge(self.installation_id, used)
        log.debug("installation %d: %d prompt tokens this window", self.installation_id, total)
        return out


def metered(engines: EngineProvider, settings: Settings, job: Job) -> EngineProvider:
    """``engines`` whose models charge the job's installation for their prompt tokens."""
    tokens = budget(settings)

    def provide(adapter: str | None) -> ModelPort:
        return MeteredModel(engines(adapter), tokens, job.installation_id)

    return provide
