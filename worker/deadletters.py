"""Attempts per job, and the dead letters: jobs that failed or killed their worker N times.

Every delivery of a job counts as an attempt, counted in Redis (by the job's key) when
the task starts, before anything runs: a retry after a transient GitHub error, and a
redelivery after the worker process died (killed, out of memory, past Celery's hard
time limit), which no code of the dead process could have counted. A job whose
attempts are used up is moved to the dead letters instead of running again; an
operator lists them and puts them back on the queue (``reviewbot dead-letters``),
which starts their count afresh.

Keys (prefix :data:`~reviewbot.settings.defaults.DEDUPE_PREFIX`): ``attempts:{job key}``
(a counter that expires), ``dead-letters`` (a hash: job key → JSON entry).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from reviewbot.jobs.job import Job
from reviewbot.settings.defaults import DEDUPE_PREFIX, JOB_ATTEMPTS_TTL

log = logging.getLogger(__name__)


class DeadLetterError(LookupError):
    """No dead letter has the key asked for."""


@dataclass(frozen=True)
class DeadLetter:
    """A job that will not run again until an operator requeues it."""

    job: Job
    attempts: int
    reason: str
    at: float
    """When it was moved to the dead letters (Unix time)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.job.key,
            "job": self.job.to_dict(),
            "attempts": self.attempts,
            "reason": self.reason,
            "at": self.at,
        }


class DeadLetters:
    """Attempt counts and dead letters in Redis (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEDUPE_PREFIX,
        ttl: int = JOB_ATTEMPTS_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.ttl = ttl
        self.clock = clock
        self._attempts = f"{prefix}:attempts:"
        self.key = f"{prefix}:dead-letters"

    # -- attempts ----------------------------------------------------------------------

    def attempt(self, job: Job) -> int:
        """Count one more delivery of ``job``; its number (1 for the first)."""
        pipe = self.redis.pipeline()
        pipe.incr(self._attempts + job.key)
        pipe.expire(self._attempts + job.key, self.ttl)
        count, _ = pipe.execute()
        return int(count)

    def attempts(self, job: Job) -> int:
        """How many deliveries of ``job`` were counted."""
        return int(self.redis.get(self._attempts + job.key) or 0)

    def finished(self, job: Job) -> None:
        """``job`` ended (whatever its outcome): forget its count."""
        self.redis.delete(self._attempts + job.key)

    # -- dead letters ------------------------------------------------------------------

    def is_dead(self, job: Job) -> bool:
        return bool(self.redis.hexists(self.key, job.key))

    def bury(self, job: Job, attempts: int, reason: str) -> DeadLetter:
        """Move ``job`` to the dead letters (after ``attempts`` attempts, for ``reason``)."""
        letter = DeadLetter(job, attempts, reason, self.clock())
        self.redis.hset(self.key, job.key, json.dumps(letter.to_dict()))
        log.error(
            "job %s moved to the dead letters after %d attempts: %s", job.key, attempts, reason
        )
        return letter

    def letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        found = [_letter(raw) for raw in self.redis.hvals(self.key)]
        return sorted(found, key=lambda d: d.at)

    def requeue(self, key: str, enqueue: Callable[[Job], None]) -> Job:
        """Put the dead letter ``key`` back on its queue, its attempt count reset.

        The entry is taken out first (so two operators never both requeue it) and put
        back if publishing fails.
        """
        raw = self.redis.hget(self.key, key)
        if raw is None or not self.redis.hdel(self.key, key):
            raise DeadLetterError(f"no dead letter with the key {key!r}")
        letter = _letter(raw)
        self.redis.delete(self._attempts + key)
        try:
            enqueue(letter.job)
        except Exception:
            self.redis.hset(self.key, key, raw)
            raise
        log.info("dead letter %s requeued", key)
        return letter.job


def _letter(raw: bytes | str) -> DeadLetter:
    data = json.loads(raw)
    return DeadLetter(
        Job.from_dict(data["job"]), int(data["attempts"]), str(data["reason"]), float(data["at"])
    )
