"""The per-pull-request lock of :class:`reviewbot.runners.ports.PullLocks`, in Redis.

redis-py's :class:`redis.lock.Lock` (``SET NX PX`` with a random token, released only
by its owner) with a time to live, renewed by a background thread while it is held:
a worker that dies holding the lock frees it after the TTL, a live one keeps it for
as long as GitHub takes to answer. Every worker process of a deployment shares the
locks through the Redis of its queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from reviewbot.runners.ports import PullBusy
from reviewbot.settings.defaults import (
    PULL_LOCK_PREFIX,
    PULL_LOCK_TTL_SECONDS,
    PULL_LOCK_WAIT_SECONDS,
)

log = logging.getLogger(__name__)

#: Seconds between two attempts to take a lock another job holds.
_POLL_SECONDS = 0.1


class RedisPullLocks:
    """:class:`~reviewbot.runners.ports.PullLocks` shared by every worker through Redis.

    ``ttl``: seconds the lock outlives a holder that stopped renewing it (renewed
    every ``ttl / 3``); ``wait``: seconds a job waits for it before
    :class:`~reviewbot.runners.ports.PullBusy` (the queue retries the job later).
    """

    def __init__(
        self,
        client: redis.Redis,
        ttl: float = PULL_LOCK_TTL_SECONDS,
        wait: float = PULL_LOCK_WAIT_SECONDS,
        prefix: str = PULL_LOCK_PREFIX,
    ) -> None:
        if ttl <= 0 or wait < 0:
            raise ValueError("the lock's ttl must be positive and its wait not negative")
        self.client = client
        self.ttl = ttl
        self.wait = wait
        self.prefix = prefix

    def key(self, repo: str, number: int) -> str:
        """The Redis key of ``repo``'s pull request ``number``."""
        return f"{self.prefix}{repo}#{int(number)}"

    @contextmanager
    def hold(self, repo: str, number: int) -> Iterator[None]:
        """Hold the pull request's lock for the ``with`` block (PullBusy if not had in time)."""
        key = self.key(repo, number)
        lock = self.client.lock(
            key,
            timeout=self.ttl,
            sleep=_POLL_SECONDS,
            blocking_timeout=self.wait,
            thread_local=False,
        )
        self._acquire(lock, f"{repo}#{number}")
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lock, key, stop), name=f"renew {key}", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            self._release(lock, key)

    def _acquire(self, lock: Lock, pull: str) -> None:
        try:
            if lock.acquire(blocking=False):
                return
            log.info("waiting for the lock of %s: another job is posting to it", pull)
            if lock.acquire():
                log.info("got the lock of %s", pull)
                return
        except redis.RedisError as e:
            raise PullBusy(f"the lock of {pull} is unavailable ({type(e).__name__})") from e
        raise PullBusy(f"{pull} stayed locked by another job for {self.wait:.0f}s")

    def _renew(self, lock: Lock, key: str, stop: threading.Event) -> None:
        """Reset the lock's TTL every third of it until ``stop`` is set."""
        while not stop.wait(self.ttl / 3):
            try:
                lock.reacquire()
            except (LockError, redis.RedisError) as e:
                log.warning("could not renew lock %s: %s", key, e)
                return

    def _release(self, lock: Lock, key: str) -> None:
        try:
            lock.release()
        except LockError:
            log.warning("lock %s expired before it was released", key)
        except redis.RedisError as e:
            log.warning("could not release lock %s (it expires in %.0fs): %s", key, self.ttl, e)
