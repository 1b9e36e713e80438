"""Every job has a deadline (issue 11, item 6): the pure logic, on an injectable clock.

The deadline itself; the engine stopping generation mid-batch on a tiny 4-bit model;
the review and command runners against the in-memory GitHub; the time limits the
settings derive for Celery.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from memory_github import InMemoryGitHub, ScriptedModel, task_of

from reviewbot.jobs.deadline import Deadline, DeadlineExceeded, current_deadline, job_deadline
from reviewbot.jobs.job import Job
from reviewbot.model.serving import load_engine
from reviewbot.runners.command import run_command_job
from reviewbot.runners.review import run_review_job
from reviewbot.settings.defaults import JOB_TIME_BUDGET, GenerationSettings
from reviewbot.settings.server import Settings, SettingsError

REPO, NUMBER = "octo/demo", 7
HEAD = hashlib.sha1(b"head").hexdigest()
DIFF = """\
diff --git a/app/users.py b/app/users.py
index 4c6b501..99e0dc5 100644
--- a/app/users.py
+++ b/app/users.py
@@ -10,2 +10,5 @@ def get_user(conn, user_id):
     cur.execute("SELECT id, name FROM users WHERE id = ?", (user_id,))
     return cur.fetchone()
+
+def find_users(conn, name):
+    return conn.execute("SELECT * FROM users WHERE name = '" + name + "'")
"""
CRITIQUE = "The query concatenates name into the SQL string; pass it as a parameter instead."


class Clock:
    """A clock that moves only when told (``advance``) or by ``tick`` on every reading."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now = 1000.0
        self.tick = tick
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the deadline ------------------------------------------------------------------------


def test_a_deadline_passes_after_its_budget_on_its_clock() -> None:
    clock = Clock()
    deadline = Deadline(30, clock)

    clock.advance(29.5)
    assert not deadline.expired() and deadline.remaining() == pytest.approx(0.5)
    deadline.check("fetch")  # still in time
    clock.advance(0.5)
    assert deadline.expired() and deadline.remaining() == 0.0
    with pytest.raises(DeadlineExceeded) as e:
        deadline.check("generation")
    assert str(e.value) == "the job ran past its time budget of 30 s (during generation)"
    assert (e.value.budget, e.value.stage, e.value.user_facing) == (30, "generation", True)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Deadline(0)


def test_a_job_deadline_holds_for_its_block_only() -> None:
    assert current_deadline() is None
    deadline = Deadline(5, Clock())
    with job_deadline(deadline):
        assert current_deadline() is deadline
        with job_deadline(inner := Deadline(1, Clock())):
            assert current_deadline() is inner
        assert current_deadline() is deadline
    assert current_deadline() is None


# --- the engine stops generating --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny4(tiny_model_dir: Path):
    return load_engine(
        str(tiny_model_dir), device="cpu", quantize="4bit", settings=GenerationSettings()
    )


def test_generation_stops_at_the_deadline_mid_batch(tiny4) -> None:
    prompts = [tiny4.renderer.task("critique", ORIGINAL="def f(x):\n    return x")] * 3
    # each reading of the clock is a second: the deadline (budget 20 s) passes while
    # the first batch is generating, some tokens in (the tiny model never stops itself)
    clock = Clock(tick=1.0)
    with job_deadline(Deadline(20, clock)), pytest.raises(DeadlineExceeded) as e:
        tiny4.generate(prompts, max_new_tokens=150)
    assert e.value.stage == "generation"
    # read once before the batch and once per new token: stopped near the 20th token,
    # not after the 150 asked for
    assert 15 <= clock.readings <= 25


def test_generation_past_the_deadline_does_not_start(tiny4) -> None:
    clock = Clock()
    deadline = Deadline(1, clock)
    clock.advance(2)
    with job_deadline(deadline), pytest.raises(DeadlineExceeded):
        tiny4.generate(["def f(x): pass"], max_new_tokens=5)


def test_generation_in_time_is_whole(tiny4) -> None:
    prompt = tiny4.renderer.task("critique", ORIGINAL="def f(x):\n    return x")
    free = tiny4.generate([prompt], max_new_tokens=8)
    with job_deadline(Deadline(3600, Clock())):
        assert tiny4.generate([prompt], max_new_tokens=8) == free
    assert tiny4.last_stats.generated_tokens == 8


# --- the runners --------------------------------------------------------------------------


@pytest.fixture
def gh() -> InMemoryGitHub:
    gh = InMemoryGitHub()
    gh.add_pull(REPO, NUMBER, HEAD, DIFF, base_sha=hashlib.sha1(b"base").hexdigest())
    gh.set_role(REPO, "maintainer", "write")
    return gh


def slow_model(clock: Clock, seconds: float, like_the_engine: bool = False) -> ScriptedModel:
    """A model whose every generate call takes ``seconds`` on ``clock``; ``like_the_engine``:
    it then checks the job's deadline, as :class:`Engine` does after each batch."""

    def respond(prompt: str) -> str:
        clock.advance(seconds)
        deadline = current_deadline()
        if like_the_engine and deadline is not None:
            deadline.check("generation")
        return CRITIQUE if task_of(prompt) == "critique" else "It stores the value."

    return ScriptedModel(respond)


def test_a_review_past_its_budget_ends_timed_out_and_posts_nothing(gh) -> None:
    clock = Clock()
    job = Job("auto", REPO, 1, NUMBER, HEAD)
    with job_deadline(Deadline(60, clock)):
        out = run_review_job(job, gh, slow_model(clock, 90).engines)

    assert out.status == "failed"
    assert gh.reviews == [] and "post_review" not in gh.calls
    (run,) = gh.check_runs
    assert (run.status, run.conclusion) == ("completed", "timed_out")
    assert run.title == "reviewbot ran past its time budget"
    assert run.summary == (
        "The job ran past its time budget of 60 s (during generation); nothing was posted."
    )


def test_a_review_is_stopped_between_stages_before_the_model_runs(gh) -> None:
    clock = Clock()
    model = ScriptedModel(lambda prompt: CRITIQUE)
    with job_deadline(Deadline(60, clock)):
        clock.advance(61)  # the in-memory GitHub is instant: fetching "took" the budget
        out = run_review_job(Job("auto", REPO, 1, NUMBER, HEAD), gh, model.engines)

    assert out.status == "failed" and model.prompts == [] and gh.reviews == []
    (run,) = gh.check_runs
    assert run.conclusion == "timed_out" and "(during fetching)" in run.summary


def test_a_review_in_time_is_posted(gh) -> None:
    clock = Clock()
    with job_deadline(Deadline(60, clock)):
        out = run_review_job(Job("auto", REPO, 1, NUMBER, HEAD), gh, slow_model(clock, 30).engines)
    assert out.status == "posted"
    assert [r.conclusion for r in gh.check_runs] == ["success"]


def test_a_command_past_its_budget_gets_its_failure_reply(gh) -> None:
    clock = Clock()
    comment = gh.add_issue_comment(REPO, NUMBER, "/ask what does find_users do?", "maintainer")
    job = Job(
        "ask",
        REPO,
        1,
        NUMBER,
        "",
        comment_id=comment,
        args="/ask what does find_users do?",
        sender="maintainer",
        comment_type="issue",
    )
    with job_deadline(Deadline(60, clock)):
        out = run_command_job(job, gh, slow_model(clock, 90, like_the_engine=True).engines)

    assert out.status == "failed"
    (reply,) = gh.replies
    assert reply.body.startswith(
        "`/ask` failed: the job ran past its time budget of 60 s (during generation)"
    )
    assert gh.reactions_on(REPO, "issue", comment) == {"confused"}


# --- Celery's limits follow the budget ----------------------------------------------------


def test_the_time_limits_follow_the_budget_and_stay_below_the_visibility_timeout() -> None:
    default = Settings.from_env({})
    assert default.job_time_budget == JOB_TIME_BUDGET
    soft, hard = default.task_time_limits
    assert JOB_TIME_BUDGET < soft < hard < default.visibility_timeout

    short = Settings.from_env(
        {"REVIEWBOT_JOB_TIME_BUDGET": "20", "REVIEWBOT_VISIBILITY_TIMEOUT": "31"}
    )
    assert short.task_time_limits == (25, 30) and short.time_limit_problem() is None

    tight = Settings.from_env({"REVIEWBOT_VISIBILITY_TIMEOUT": "600"})
    problem = tight.time_limit_problem()
    assert problem is not None
    assert (
        "REVIEWBOT_VISIBILITY_TIMEOUT (600 s)" in problem and "REVIEWBOT_JOB_TIME_BUDGET" in problem
    )
    with pytest.raises(SettingsError, match="REVIEWBOT_VISIBILITY_TIMEOUT"):
        tight.require_worker()


def test_the_worker_refuses_limits_that_would_run_a_job_twice() -> None:
    from worker.app import make_celery

    with pytest.raises(SettingsError, match="runs twice"):
        make_celery(Settings(visibility_timeout=60))
    app = make_celery(Settings(job_time_budget=20, visibility_timeout=31))
    assert (app.conf.task_soft_time_limit, app.conf.task_time_limit) == (25, 30)
    assert app.conf.task_acks_on_timeout is False and app.conf.task_reject_on_worker_lost
    assert app.conf.broker_transport_options["visibility_timeout"] == 31


@pytest.mark.parametrize("value", ["0", "soon", "-5"])
def test_a_bad_budget_or_attempt_count_is_a_clear_error(value: str) -> None:
    for name in ("REVIEWBOT_JOB_TIME_BUDGET", "REVIEWBOT_JOB_MAX_ATTEMPTS"):
        with pytest.raises(SettingsError, match=f"{name} must be a positive integer"):
            Settings.from_env({name: value})
