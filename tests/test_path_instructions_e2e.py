"""A repository's path_instructions and response_language reach the model, end to end.

The repository's ``.github/reviewbot.toml`` asks for German and gives instructions for
``app/users.py`` only. A tiny model is overfitted (tests/tinymodel.py) to answer each
unit's critique prompt rendered exactly so (the ORIGINAL layout, the guidelines of
the unit's path, the language instruction) with a German critique, and the same
prompts rendered any other way (guidelines on the wrong unit, or none on the right
one) with a critique saying so. The real parts run: the signed webhook → Flask over
HTTP → Redis → a Celery worker subprocess (tiny 4-bit model) → PyGithub → the GitHub
stand-in; the comments posted prove which prompt each unit got.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BASE,
    NUMBER,
    OPENED,
    REPO,
    SMALL_FILES,
    broker,
    deliver,
    pr,
    start_worker,
    webhook,
    worker_env,
)
from tinymodel import overfit_tiny_model

from reviewbot.review.diffplan import plan_diff
from reviewbot.review.pipeline import critique_prompts
from reviewbot.review.prompts import Renderer
from reviewbot.settings.repo import parse_repo_config

HEAD = "d" * 40
DIFF = "".join(SMALL_FILES.values())
CONFIG = """\
revise = false
profile = "assertive"
response_language = "de"
path_instructions = [{ path = "app/users.py", instructions = "Check for SQL injection." }]
"""
#: What the model says for each unit's prompt as the worker must render it.
RIGHT = {
    "app/cache.py": "Der Standardwert wird geteilt.",
    "app/users.py": "Die Abfrage ist unsicher.",
}
#: What it says for the prompts rendered otherwise.
WRONG = {
    "app/cache.py": "Wrong: guidelines of users.py here.",
    "app/users.py": "Wrong: no guidelines for users.py.",
}


@pytest.fixture
def german_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A tiny model that answers the units' prompts rendered with the repository's
    settings in German, and the same prompts with the guidelines misplaced in English."""
    units = plan_diff(DIFF).units
    assert [u.path for u in units] == list(RIGHT)
    renderer = Renderer("alpaca")
    options = parse_repo_config(CONFIG).review_options()
    right = critique_prompts(units, renderer, options)
    # the guidelines applied to every unit, and to none
    everywhere = replace(options, path_instructions=(("*", "Check for SQL injection."),))
    nowhere = replace(options, path_instructions=())
    misplaced = [
        critique_prompts(units[:1], renderer, everywhere)[0],
        critique_prompts(units[1:], renderer, nowhere)[0],
    ]
    assert len(set(right + misplaced)) == 4
    pairs = [(p, RIGHT[u.path]) for p, u in zip(right, units, strict=True)]
    pairs += [(p, WRONG[u.path]) for p, u in zip(misplaced, units, strict=True)]
    return overfit_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("german"), pairs, steps=600)


def test_path_instructions_and_the_language_reach_the_matching_unit_only(
    pr: GitHubStandIn, webhook: str, start_worker, german_model: Path
) -> None:
    pr.add_pull(REPO, NUMBER, DIFF, HEAD, BASE)
    pr.set_file(REPO, "main", ".github/reviewbot.toml", CONFIG)
    worker = start_worker(REVIEWBOT_MODEL=str(german_model), REVIEWBOT_MAX_NEW_TOKENS="40")
    opened = json.loads(json.dumps(OPENED))
    opened["pull_request"]["head"]["sha"] = HEAD
    assert deliver(webhook, "pull_request", opened).status_code == 202
    worker.wait_for("finished: posted", 180)

    (review,) = pr.reviews(REPO, NUMBER)
    said = {c["path"]: c["body"].split("\n")[0] for c in review["comments"]}
    assert said == RIGHT
