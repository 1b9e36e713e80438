"""The pull-request lock in Redis (``worker.locks.RedisPullLocks``), against the real Redis.

Several workers post to the same pull request one after the other: the lock is held
by one holder at a time, outlives a holder that died by its TTL only, stays with a
live holder however long it posts, and a job that cannot have it in time gets a
transient error (the queue retries it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from conftest import DEDUPE_DB, redis_url

from reviewbot.github.errors import TransientGitHubError
from reviewbot.runners.ports import PullBusy, PullLocks
from worker.locks import RedisPullLocks

REPO = "octo/demo"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url(DEDUPE_DB))
    yield r
    r.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"reviewbot-test:{uuid.uuid4().hex}:"
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_holders_post_one_after_the_other(client: redis.Redis, prefix: str) -> None:
    locks: PullLocks = RedisPullLocks(client, ttl=5, wait=10, prefix=prefix)
    events: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with locks.hold(REPO, 7):
            events.append("first in")
            first_in.set()
            time.sleep(0.5)  # the first job is posting (the second must wait meanwhile)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(5)
    with locks.hold(REPO, 7):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    # another pull request is not held up
    with locks.hold(REPO, 8), locks.hold("octo/other", 7):
        pass
    assert list(client.scan_iter(f"{prefix}*")) == []


def test_a_live_holder_keeps_the_lock_past_its_ttl(
    client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    locks = RedisPullLocks(client, ttl=0.6, wait=0, prefix=prefix)
    with locks.hold(REPO, 7):
        time.sleep(1.5)  # GitHub is slow to answer: longer than the TTL
        with pytest.raises(PullBusy, match="stayed locked by another job"), locks.hold(REPO, 7):
            pass
    assert "expired" not in caplog.text
    with locks.hold(REPO, 7):  # released
        pass


def test_the_lock_of_a_holder_that_died_frees_itself_after_its_ttl(
    client: redis.Redis, prefix: str
) -> None:
    locks = RedisPullLocks(client, ttl=0.5, wait=5, prefix=prefix)
    # a worker killed while holding it: its lock is there, and nobody renews it
    dead = client.lock(locks.key(REPO, 7), timeout=0.5)
    assert dead.acquire(blocking=False)
    started = time.monotonic()
    with locks.hold(REPO, 7):
        waited = time.monotonic() - started
    assert 0.2 < waited < 3


def test_a_job_that_cannot_have_the_lock_in_time_is_retried_later(
    client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="worker.locks")
    locks = RedisPullLocks(client, ttl=5, wait=0.3, prefix=prefix)
    other = client.lock(locks.key(REPO, 7), timeout=5)
    assert other.acquire(blocking=False)
    with pytest.raises(PullBusy) as info, locks.hold(REPO, 7):
        pytest.fail("the lock was held by another job")
    assert isinstance(info.value, TransientGitHubError)  # the job queue retries it
    assert f"waiting for the lock of {REPO}#7" in caplog.text
    other.release()


def test_redis_down_is_a_transient_error_too() -> None:
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    with pytest.raises(PullBusy, match="unavailable"), RedisPullLocks(down).hold(REPO, 7):
        pytest.fail("no Redis, no lock")


def test_an_expired_lock_is_reported_and_not_released_from_its_new_holder(
    client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    locks = RedisPullLocks(client, ttl=30, wait=0, prefix=prefix)
    with locks.hold(REPO, 7):
        # the key vanished (expired while Redis could not be reached) and another job took it
        client.delete(locks.key(REPO, 7))
        taken = client.lock(locks.key(REPO, 7), timeout=5)
        assert taken.acquire(blocking=False)
    assert "expired before it was released" in caplog.text
    assert taken.owned()  # the new holder keeps it
    taken.release()


def test_bad_settings_are_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        RedisPullLocks(client, ttl=0)
