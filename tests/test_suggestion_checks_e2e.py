"""Suggestions that do not parse, end to end through the real parts.

A tiny model is overfitted to critique a Python change and to revise it into code
whose body lost its indentation (the issue's own failure). Through the GitHub App
(signed webhook → Flask → Redis → Celery worker with the model → PyGithub to the
GitHub stand-in, which serves the file at the head) and through the command line
(a diff file; ``--git BASE..HEAD`` in a repository), the revision is never a
committable suggestion: it is shown once, as plain code marked "does not parse", and
the counts say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from github_standin import GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401
from test_app_e2e import (  # noqa: F401 - fixtures shared with the GitHub App tests
    BASE,
    HEAD,
    NUMBER,
    OPENED,
    REPO,
    broker,
    deliver,
    pr,
    start_worker,
    webhook,
    worker_env,
)
from test_cli import git, reviewbot
from tinymodel import overfit_tiny_model

from reviewbot.review.diffplan import plan_diff
from reviewbot.review.findings import Finding
from reviewbot.review.pipeline import critique_prompts, revise_prompts
from reviewbot.review.prompts import Renderer
from reviewbot.settings.repo import parse_repo_config

PATH = "app/load.py"
BASE_FILE = "def load(items=[]):\n    return items\n"
HEAD_FILE = "def load(items={}):\n    return items\n"
DIFF = (
    f"diff --git a/{PATH} b/{PATH}\nindex 1a2b3c4..5d6e7f8 100644\n"
    f"--- a/{PATH}\n+++ b/{PATH}\n@@ -1,2 +1,2 @@\n"
    "-def load(items=[]):\n+def load(items={}):\n     return items\n"
)
#: The model's revision: ``return`` lost its indentation under ``def`` (no Python).
BROKEN = "def load(items=()):\nreturn dict(items)"
#: The critique carries its own fenced copy of the revision, as the demo model's did.
CRITIQUE = f"The default dict is shared between calls:\n\n```python\n{BROKEN}\n```"
#: "assertive": every finding is posted, whatever the tiny model's confidence.
CONFIG = 'revise = true\nprofile = "assertive"\n'
MAX_NEW_TOKENS = "64"


@pytest.fixture(scope="module")
def broken_model(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A tiny model answering the unit's critique prompt with CRITIQUE and its revise
    prompt with BROKEN (both rendered as the pipeline renders them)."""
    (unit,) = plan_diff(DIFF).units
    renderer = Renderer("alpaca")
    options = parse_repo_config(CONFIG).review_options()
    (critique,) = critique_prompts([unit], renderer, options)
    (revise,) = revise_prompts([Finding(unit, CRITIQUE)], renderer, options)
    return overfit_tiny_model(
        tiny_model_dir,
        tmp_path_factory.mktemp("broken-revision"),
        [(critique, CRITIQUE), (revise, BROKEN)],
    )


def assert_shown_once_as_plain_code(body: str, parsed_with: str) -> None:
    assert "```suggestion" not in body
    assert f"Proposed revision (it does not parse: applied to {parsed_with}" in body
    assert body.startswith("The default dict is shared between calls:")
    assert body.count("return dict(items)") == 1  # the critique's copy is gone


def test_a_review_never_posts_a_suggestion_that_does_not_parse(
    pr, webhook, start_worker, broken_model
):
    pr.add_pull(REPO, NUMBER, DIFF, HEAD, BASE)
    pr.set_file(REPO, HEAD, PATH, HEAD_FILE)
    pr.set_file(REPO, "main", ".github/reviewbot.toml", CONFIG)
    worker = start_worker(
        REVIEWBOT_MODEL=str(broken_model), REVIEWBOT_MAX_NEW_TOKENS=MAX_NEW_TOKENS
    )
    assert deliver(webhook, "pull_request", OPENED).status_code == 202
    worker.wait_for("finished: posted", 180)

    (review,) = pr.reviews(REPO, NUMBER)
    (comment,) = review["comments"]
    assert (comment["path"], comment["line"]) == (PATH, 1)
    assert_shown_once_as_plain_code(comment["body"], "the file at the head")
    assert (
        "Suggestions: 0 committable, 1 does not parse (1 parsed with the file at the head)."
    ) in review["body"]
    # the file was read at the head, once
    assert len(pr.requests_to("GET", rf"/repos/{REPO}/contents/{PATH}")) == 1


def review_json(*args: object, cwd: Path | None = None) -> dict:
    proc = reviewbot(
        "review",
        *args,
        "--revise",
        "--quantize",
        "none",
        "--max-new-tokens",
        MAX_NEW_TOKENS,
        "--profile",
        "assertive",
        "--format",
        "json",
        cwd=cwd,
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_cli_parses_a_diff_files_suggestion_with_the_hunk(tmp_path, broken_model):
    diff = tmp_path / "change.diff"
    diff.write_text(DIFF)

    doc = review_json(diff, "--model", broken_model)

    (comment,) = doc["comments"]
    assert comment["suggestion"] is None
    assert_shown_once_as_plain_code(comment["body"], "the changed lines")
    assert doc["statistics"]["suggestions"] == {
        "committable": 0,
        "not_parsing": 1,
        "checked_against_file": 0,
        "checked_against_hunk_only": 1,
        "not_checked": 0,
    }


def test_the_cli_parses_a_git_ranges_suggestion_with_the_file(tmp_path, broken_model):
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / PATH).write_text(BASE_FILE)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    (repo / PATH).write_text(HEAD_FILE)
    git(repo, "commit", "-q", "-am", "head")
    # the working tree moves on: the file at the range's head is what is parsed
    (repo / PATH).write_text("garbage (\n")

    doc = review_json("--git", "HEAD~1..HEAD", "--model", broken_model, cwd=repo)

    (comment,) = doc["comments"]
    assert comment["suggestion"] is None
    assert_shown_once_as_plain_code(comment["body"], "the file at the head")
    suggestions = doc["statistics"]["suggestions"]
    assert (suggestions["not_parsing"], suggestions["checked_against_file"]) == (1, 1)


def test_the_overfitted_prompts_fit_the_tiny_models_context(tiny_model_dir):
    """The model must see its prompts whole (256 positions): nothing is truncated."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    (unit,) = plan_diff(DIFF).units
    options = parse_repo_config(CONFIG).review_options()
    prompts = critique_prompts([unit], Renderer("alpaca"), options) + revise_prompts(
        [Finding(unit, CRITIQUE)], Renderer("alpaca"), options
    )
    for prompt in prompts:
        assert len(tokenizer(prompt)["input_ids"]) + int(MAX_NEW_TOKENS) <= 256
