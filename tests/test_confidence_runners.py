"""The confidence threshold in the job runners: reviews, /summary and /revise.

Against the in-memory GitHub and the scripted model of ``tests/test_runners.py``,
whose scores (:attr:`memory_github.ScriptedModel.judge`) make the model sure of the
mutable-default critique and unsure of the SQL-injection one.
"""

from __future__ import annotations

import math

import pytest
from memory_github import InMemoryGitHub, ScriptedModel, task_of
from test_runners import (
    BASE,
    CACHE_AT_HEAD,
    HEAD,
    INJECTION,
    NUMBER,
    PR_DIFF,
    REPO,
    WRITER,
    command,
    respond,
    review_job,
)

from reviewbot.runners.command import run_command_job
from reviewbot.runners.review import run_review_job
from reviewbot.settings.defaults import BELOW_CONFIDENCE, NO_FINDING_ANSWER, PROFILES

#: The sure critique's confidence: between chill's threshold and 1.
SURE = (1 + PROFILES["chill"]) / 2
#: The unsure critique's confidence: between the assertive and the chill thresholds.
UNSURE = (PROFILES["assertive"] + PROFILES["chill"]) / 2


def judge(prompt: str, completion: str) -> float:
    """Mean token log-probabilities: "no issues" -4, INJECTION such that its contrast
    confidence is UNSURE, anything else (MUTABLE) SURE."""
    if completion == NO_FINDING_ANSWER:
        return -4.0
    if completion.startswith(INJECTION):
        return math.log(UNSURE / (1 - UNSURE)) - 4.0
    return math.log(SURE / (1 - SURE)) - 4.0


@pytest.fixture
def gh() -> InMemoryGitHub:
    """test_runners' open pull request at HEAD (two changed files) and a writer."""
    gh = InMemoryGitHub()
    gh.add_pull(REPO, NUMBER, HEAD, PR_DIFF, base_sha=BASE)
    gh.add_file(REPO, HEAD, "app/cache.py", CACHE_AT_HEAD)
    gh.set_role(REPO, WRITER, "write")
    return gh


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel(respond, judge=judge)


def posted_paths(gh: InMemoryGitHub) -> list[str]:
    return sorted(c.path for c in gh.reviews[-1].comments)


@pytest.mark.parametrize(
    ("config", "paths"),
    [
        ("", ["app/cache.py"]),  # the default profile: chill
        ('profile = "chill"', ["app/cache.py"]),
        ('profile = "assertive"', ["app/cache.py", "app/users.py"]),
        (f"min_confidence = {UNSURE / 2}", ["app/cache.py", "app/users.py"]),
        ("min_confidence = 0.99", []),
    ],
)
def test_the_repository_threshold_decides_what_a_review_posts(
    gh: InMemoryGitHub, model: ScriptedModel, config: str, paths: list[str]
) -> None:
    gh.set_config(REPO, config)

    assert run_review_job(review_job(), gh, model.engines).status == "posted"

    assert posted_paths(gh) == paths
    below = 2 - len(paths)
    body = gh.reviews[-1].body
    assert (f"{BELOW_CONFIDENCE} ({below})" in body) == (below > 0)
    # each critique was scored against its own critique prompt
    critiques = model.prompts_for("critique")
    assert {p for p, _ in model.scored} == set(critiques)


def test_summary_follows_the_threshold(gh: InMemoryGitHub, model: ScriptedModel) -> None:
    assert run_command_job(command(gh, "/summary"), gh, model.engines).status == "answered"

    revised = [p for p in model.prompts if task_of(p) == "revise"]
    assert len(revised) == 1 and "items={}" in revised[0]  # only the sure finding


def test_revise_in_the_conversation_skips_findings_below_the_threshold(
    gh: InMemoryGitHub,
) -> None:
    sure_of_all = ScriptedModel(respond)
    gh.set_config(REPO, 'profile = "assertive"')
    run_review_job(review_job(), gh, sure_of_all.engines)
    assert posted_paths(gh) == ["app/cache.py", "app/users.py"]

    gh.set_config(REPO, 'profile = "chill"')
    model = ScriptedModel(respond, judge=judge)
    assert run_command_job(command(gh, "/revise"), gh, model.engines).status == "posted"

    revised = gh.reviews[-1]
    assert [c.path for c in revised.comments] == ["app/cache.py"]
    assert f"{BELOW_CONFIDENCE} (1)" in revised.body
    assert [task_of(p) for p in model.prompts] == ["revise"]


def test_revise_in_the_conversation_with_every_finding_below_says_so(gh: InMemoryGitHub) -> None:
    gh.set_config(REPO, 'profile = "assertive"')
    run_review_job(review_job(), gh, ScriptedModel(respond).engines)
    gh.set_config(REPO, "min_confidence = 1.0")
    model = ScriptedModel(respond, judge=judge)

    assert run_command_job(command(gh, "/revise"), gh, model.engines).status == "answered"

    reply = gh.replies[-1].body
    assert reply.startswith("The 2 unresolved reviewbot finding(s) on the current diff are below")
    assert "confidence threshold (1)" in reply
    assert model.prompts == [] and len(gh.reviews) == 1
