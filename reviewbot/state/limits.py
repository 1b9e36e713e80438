"""Fair use of a shared GPU, counted in Redis by the web process and the workers.

- :class:`RateLimit`: commands anyone may write (``/help``, unknown ones) per user and
  pull request in a fixed window, so a commenter cannot keep the queue busy.
- :class:`ActiveJobs`: jobs queued or running per installation (a sorted set of job
  keys by admission time): the web admits a job only under the installation's cap,
  and the worker releases it when the job ends (stale entries expire on their own).
- :class:`TokenBudget`: prompt tokens per installation in a fixed window: a worker
  defers a job of an installation that used up its budget until the window ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from reviewbot.settings.defaults import DEDUPE_PREFIX

Clock = Callable[[], float]

# Atomically: drop entries older than the stale horizon, then admit the member if the
# set holds fewer than the cap (or already holds it). Returns the set's size, negated
# when the member was refused.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  return redis.call('ZCARD', KEYS[1])
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[3]) then
  return -n
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return n + 1
"""


class RateLimit:
    """At most ``limit`` events per ``window`` seconds per subject (a fixed window)."""

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        window: int,
        prefix: str = DEDUPE_PREFIX,
        clock: Clock = time.time,
    ) -> None:
        self.redis = client
        self.limit = limit
        self.window = window
        self.prefix = prefix
        self.clock = clock

    def hit(self, subject: str) -> bool:
        """Count one event for ``subject``; False when it is over the limit."""
        start = int(self.clock()) // self.window * self.window
        key = f"{self.prefix}:rate:{subject}:{start}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, self.window)
        count, _ = pipe.execute()
        return int(count) <= self.limit


class ActiveJobs:
    """Jobs queued or running per installation, capped (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        cap: int,
        stale_after: int,
        prefix: str = DEDUPE_PREFIX,
        clock: Clock = time.time,
    ) -> None:
        self.redis = client
        self.cap = cap
        self.stale_after = stale_after
        self.prefix = prefix
        self.clock = clock
        self._admit = client.register_script(_ADMIT)

    def key(self, installation_id: int) -> str:
        return f"{self.prefix}:active:{int(installation_id)}"

    def admit(self, installation_id: int, job_key: str) -> tuple[bool, int]:
        """Admit ``job_key`` under the cap; (admitted, jobs active for the installation)."""
        now = self.clock()
        n = int(
            self._admit(
                keys=[self.key(installation_id)],
                args=[now, now - self.stale_after, self.cap, job_key, self.stale_after],
            )
        )
        return n > 0, abs(n)

    def release(self, installation_id: int, job_key: str) -> None:
        """The job ended (done, failed or given up): it no longer counts."""
        self.redis.zrem(self.key(installation_id), job_key)

    def count(self, installation_id: int) -> int:
        horizon = self.clock() - self.stale_after
        return int(self.redis.zcount(self.key(installation_id), horizon, "+inf"))


class TokenBudget:
    """Prompt tokens per installation per fixed window (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        budget: int,
        window: int,
        prefix: str = DEDUPE_PREFIX,
        clock: Clock = time.time,
    ) -> None:
        self.redis = client
        self.budget = budget
        self.window = window
        self.prefix = prefix
        self.clock = clock

    def _key(self, installation_id: int) -> tuple[str, float]:
        start = int(self.clock()) // self.window * self.window
        return f"{self.prefix}:tokens:{int(installation_id)}:{start}", start + self.window

    def used(self, installation_id: int) -> int:
        key, _ = self._key(installation_id)
        return int(self.redis.get(key) or 0)

    def wait(self, installation_id: int) -> float:
        """Seconds until the installation may generate again (0: now)."""
        key, end = self._key(installation_id)
        if int(self.redis.get(key) or 0) < self.budget:
            return 0.0
        return max(1.0, end - self.clock())

    def charge(self, installation_id: int, tokens: int) -> int:
        """Add ``tokens`` to the installation's window; the new total."""
        key, _ = self._key(installation_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.incrby(key, int(tokens))
        pipe.expire(key, self.window)
        total, _ = pipe.execute()
        return int(total)
