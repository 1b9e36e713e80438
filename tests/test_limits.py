"""Rate limits, per-installation job caps and token budgets on the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from conftest import DEDUPE_DB, redis_url

from reviewbot.state.limits import ActiveJobs, RateLimit, TokenBudget
from worker.quotas import MeteredModel


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[tuple[redis.Redis, str]]:
    """The dedupe test database, with a prefix of this test's own (its keys deleted after)."""
    r = redis.Redis.from_url(redis_url(DEDUPE_DB))
    prefix = f"test-limits-{uuid.uuid4().hex}"
    yield r, prefix
    for key in r.scan_iter(f"{prefix}:*"):
        r.delete(key)
    r.close()


def test_a_rate_limit_counts_per_subject_and_window(client) -> None:
    r, prefix = client
    clock = Clock(3600 * 1000 + 10)
    limit = RateLimit(r, 2, 3600, prefix=prefix, clock=clock)
    assert [limit.hit("o/r#1:eve") for _ in range(3)] == [True, True, False]
    assert limit.hit("o/r#1:bob") and limit.hit("o/r#2:eve")
    clock.now += 3600  # the next window
    assert limit.hit("o/r#1:eve")
    assert all(0 < r.ttl(k) <= 3600 for k in r.scan_iter(f"{prefix}:rate:*"))


def test_active_jobs_admit_under_the_cap_and_count_each_job_once(client) -> None:
    r, prefix = client
    clock = Clock()
    jobs = ActiveJobs(r, 2, stale_after=600, prefix=prefix, clock=clock)
    assert jobs.admit(7, "auto:o/r:1:a:") == (True, 1)
    assert jobs.admit(7, "auto:o/r:1:a:") == (True, 1)  # the same job again: no new slot
    assert jobs.admit(7, "auto:o/r:2:b:") == (True, 2)
    assert jobs.admit(7, "auto:o/r:3:c:") == (False, 2)
    assert jobs.admit(8, "auto:x/y:1:d:") == (True, 1)  # another installation
    jobs.release(7, "auto:o/r:1:a:")
    assert jobs.admit(7, "auto:o/r:3:c:") == (True, 2)
    # a job that never reported its end stops counting after ``stale_after``
    clock.now += 601
    assert jobs.count(7) == 0
    assert jobs.admit(7, "auto:o/r:4:e:") == (True, 1)


def test_a_token_budget_makes_an_installation_wait_for_the_next_window(client) -> None:
    r, prefix = client
    clock = Clock(7200 * 500)
    tokens = TokenBudget(r, 1000, 3600, prefix=prefix, clock=clock)
    assert tokens.wait(7) == 0.0
    assert tokens.charge(7, 600) == 600 and tokens.wait(7) == 0.0
    assert tokens.charge(7, 600) == 1200
    clock.now += 100
    assert tokens.wait(7) == 3500.0  # until the window ends
    assert tokens.wait(8) == 0.0  # another installation has its own budget
    clock.now += 3500
    assert tokens.wait(7) == 0.0 and tokens.used(7) == 0


def test_a_metered_model_charges_its_installation_the_prompt_tokens_it_sent(client) -> None:
    r, prefix = client
    tokens = TokenBudget(r, 10_000, 3600, prefix=prefix, clock=Clock())

    class Stats:
        prompt_tokens = 321

    class Model:
        renderer = object()
        model_name, adapter = "tiny", "/adapters/team"
        last_stats = Stats()

        def generate(self, prompts: list[str]) -> list[str]:
            return [p.upper() for p in prompts]

    metered = MeteredModel(Model(), tokens, 42)
    assert (metered.model_name, metered.adapter) == ("tiny", "/adapters/team")  # recorded
    assert metered.generate(["a", "b"]) == ["A", "B"]
    assert metered.renderer is Model.renderer
    assert tokens.used(42) == 321
