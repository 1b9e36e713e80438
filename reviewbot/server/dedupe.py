"""Redis-backed idempotency: webhook deliveries and semantic job keys.

Every claim is one atomic ``SET key 1 NX EX ttl``. A caller that claims with a
short ``ttl`` (while it enqueues) calls :meth:`Deduper.confirm` once the job is
queued, or the ``release_*`` methods when queueing failed, so nothing is lost.
"""

from __future__ import annotations

import redis

from reviewbot.settings.defaults import DEDUPE_PREFIX, DELIVERY_DEDUPE_TTL, JOB_DEDUPE_TTL


class Deduper:
    """Remembers delivery ids and claimed job keys in Redis, each with a TTL."""

    def __init__(
        self,
        redis_client: redis.Redis,
        prefix: str = DEDUPE_PREFIX,
        delivery_ttl: int = DELIVERY_DEDUPE_TTL,
        job_ttl: int = JOB_DEDUPE_TTL,
    ) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.delivery_ttl = delivery_ttl
        self.job_ttl = job_ttl

    def delivery_key(self, delivery_id: str) -> str:
        return f"{self.prefix}:delivery:{delivery_id}"

    def job_key(self, job_key: str) -> str:
        return f"{self.prefix}:job:{job_key}"

    def seen_delivery(self, delivery_id: str, ttl: int | None = None) -> bool:
        """Record ``delivery_id``; True if it had already been recorded."""
        return not self._claim(self.delivery_key(delivery_id), ttl or self.delivery_ttl)

    def claim_job(self, job_key: str, ttl: int | None = None) -> bool:
        """Claim the semantic ``job_key``; True if this caller got it."""
        return self._claim(self.job_key(job_key), ttl or self.job_ttl)

    def release_delivery(self, delivery_id: str) -> None:
        """Forget ``delivery_id`` (its job could not be queued; a redelivery may retry)."""
        self.redis.delete(self.delivery_key(delivery_id))

    def release_job(self, job_key: str) -> None:
        """Give back a claimed job key (its job could not be queued)."""
        self.redis.delete(self.job_key(job_key))

    def confirm(self, delivery_id: str | None = None, job_key: str | None = None) -> None:
        """Extend claims taken with a short TTL to the full TTLs (the job is queued)."""
        pipe = self.redis.pipeline(transaction=False)
        if delivery_id is not None:
            pipe.expire(self.delivery_key(delivery_id), self.delivery_ttl)
        if job_key is not None:
            pipe.expire(self.job_key(job_key), self.job_ttl)
        pipe.execute()

    def _claim(self, key: str, ttl: int) -> bool:
        return bool(self.redis.set(key, 1, nx=True, ex=ttl))
