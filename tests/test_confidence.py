"""Every finding has a confidence: the candidates, the threshold, the profiles, the CLI.

The pipeline is driven by scripted ``generate`` and ``score`` functions (pure); the
command line runs for real (subprocesses, the tiny 4-bit model); the worker's metered
model charges its scoring to the real Redis.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import DEDUPE_DB, redis_url
from test_cli import SAMPLE, reviewbot
from tinymodel import overfit_tiny_model

from reviewbot.cli import build_parser
from reviewbot.review.confidence import (
    confidence,
    confidences,
    rate_findings,
    raw_scores,
)
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.findings import Finding
from reviewbot.review.pipeline import critique_prompts, review_plan
from reviewbot.review.prompts import Renderer
from reviewbot.review.render import review_json
from reviewbot.review.units import Plan, ReviewUnit
from reviewbot.settings.defaults import (
    BELOW_CONFIDENCE,
    CONFIDENCE_METHOD,
    CONFIDENCE_METHODS,
    DEFAULT_PROFILE,
    NO_FINDING_ANSWER,
    PROFILES,
    ReviewOptions,
)
from reviewbot.settings.repo import parse_repo_config
from reviewbot.state.limits import TokenBudget
from worker.quotas import MeteredModel

CACHE = "class Cache:\n    def __init__(self, ttl, items={}):\n        self.ttl = ttl"
QUERY = 'def find(db, name):\n    return db.run(f"SELECT {name}")'
U_CACHE = ReviewUnit("app/cache.py", 1, 3, "@@ -1,3 +1,3 @@", CACHE, added_lines=(2,))
U_QUERY = ReviewUnit("app/users.py", 1, 2, "@@ -1,2 +1,2 @@", QUERY, added_lines=(2,))
PLAN = Plan((U_CACHE, U_QUERY))
SURE = "The mutable default argument `items={}` is shared between all caches."
UNSURE = "Consider renaming the function `find` to something more descriptive."
CRITIQUES = {"app/cache.py": SURE, "app/users.py": UNSURE}


def logit(p: float) -> float:
    return math.log(p / (1 - p))


#: The sure critique's confidence: between chill's threshold and 1.
SURE_CONFIDENCE = (1 + PROFILES["chill"]) / 2
#: The unsure critique's confidence: between the assertive and the chill thresholds.
UNSURE_CONFIDENCE = (PROFILES["assertive"] + PROFILES["chill"]) / 2
#: The scripted mean token log-probability of the "no issues" answer.
NONE_SCORE = -4.0


class Model:
    """Scripted: critiques by path, revisions echo the code; scores by completion."""

    def __init__(self) -> None:
        self.generated: list[list[str]] = []
        self.scored: list[list[tuple[str, str]]] = []

    def generate(self, prompts: list[str]) -> list[str]:
        self.generated.append(list(prompts))
        out = []
        for p in prompts:
            path = "app/cache.py" if "class Cache" in p else "app/users.py"
            out.append(CRITIQUES[path] if "Please critique" in p else "```\nx = 1\n```")
        return out

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        self.scored.append(list(zip(prompts, completions, strict=True)))
        # "no issues" scores -4 per token; contrast = sigmoid(l_c + 4)
        table = {
            NO_FINDING_ANSWER: NONE_SCORE,
            SURE: logit(SURE_CONFIDENCE) + NONE_SCORE,
            UNSURE: logit(UNSURE_CONFIDENCE) + NONE_SCORE,
        }
        return [table[c] for c in completions]


# --- the candidates ----------------------------------------------------------------------


def test_the_candidates_are_confidences_in_0_1_ordered_as_their_scores() -> None:
    assert confidence("likelihood", 0.0, None) == 1.0
    assert confidence("likelihood", -1.0, None) == pytest.approx(math.exp(-1))
    assert confidence("no-finding", -3.0, -0.1) == pytest.approx(1 - math.exp(-0.1))
    # contrast: the critique's share of the two answers' per-token probabilities
    assert confidence("contrast", -2.0, -2.0) == 0.5
    assert confidence("contrast", -1.0, -3.0) == pytest.approx(1 / (1 + math.exp(-2)))
    assert confidence("contrast", -800.0, 0.0) == 0.0  # no overflow either way
    assert confidence("contrast", 0.0, -800.0) == 1.0
    for method in CONFIDENCE_METHODS:
        low, high = confidence(method, -5.0, -0.5), confidence(method, -0.5, -5.0)
        assert 0.0 <= low <= high <= 1.0
    assert confidence("likelihood", -5.0, None) < confidence("likelihood", -0.5, None)
    with pytest.raises(ValueError, match="unknown confidence method"):
        confidence("vibes", 0.0, 0.0)
    with pytest.raises(ValueError, match="needs the 'no issues' answer"):
        confidence("contrast", 0.0, None)


def test_one_batched_score_call_scores_each_critique_and_the_no_issues_answer() -> None:
    model = Model()
    crit, none = raw_scores(["p1", "p2"], [SURE, UNSURE], model.score)
    assert model.scored == [
        [("p1", SURE), ("p2", UNSURE), ("p1", NO_FINDING_ANSWER), ("p2", NO_FINDING_ANSWER)]
    ]
    assert none == [NONE_SCORE] * 2 and crit[0] == logit(SURE_CONFIDENCE) + NONE_SCORE
    model.scored.clear()
    likely = math.exp(logit(SURE_CONFIDENCE) + NONE_SCORE)
    assert confidences(["p1"], [SURE], model.score, "likelihood") == [pytest.approx(likely)]
    assert model.scored == [[("p1", SURE)]]  # likelihood needs no "no issues" pass
    with pytest.raises(ValueError, match="score returned 1 scores for 2 completions"):
        raw_scores(["p"], [SURE], lambda ps, cs: [0.0])


# --- the threshold in the pipeline -----------------------------------------------------


def test_a_finding_below_the_threshold_is_counted_not_posted_and_json_has_confidence() -> None:
    model = Model()
    renderer = Renderer("alpaca")
    options = ReviewOptions(min_confidence=PROFILES["chill"])
    review = review_plan(PLAN, model.generate, renderer, options, score=model.score)
    assert [c.path for c in review.comments] == ["app/cache.py"]
    assert [(d.path, d.start_line, d.reason) for d in review.dropped] == [
        ("app/users.py", 1, BELOW_CONFIDENCE)
    ]
    (cache,) = review.comments
    assert cache.confidence == pytest.approx(SURE_CONFIDENCE)
    # each critique scored against the very prompt it was generated from, in one call
    (pairs,) = model.scored
    prompts = critique_prompts(PLAN.units, renderer, options)
    assert model.generated[0] == prompts
    assert pairs[:2] == [(prompts[0], SURE), (prompts[1], UNSURE)]
    doc = json.loads(review_json(review))
    assert doc["comments"][0]["confidence"] == pytest.approx(cache.confidence, abs=1e-4)


def test_no_revision_is_asked_for_a_finding_below_the_threshold() -> None:
    model = Model()
    options = ReviewOptions(revise=True, min_confidence=PROFILES["chill"])
    review_plan(PLAN, model.generate, Renderer(), options, score=model.score)
    revise_prompts = [p for batch in model.generated for p in batch if "Please revise" in p]
    assert len(revise_prompts) == 1 and "class Cache" in revise_prompts[0]


def test_profiles_decide_what_is_posted() -> None:
    assert 0.0 < PROFILES["assertive"] < PROFILES["chill"] < 1.0
    assert DEFAULT_PROFILE == "chill"
    posted = {}
    for toml in ('profile = "chill"', 'profile = "assertive"', "min_confidence = 0.05", ""):
        options = parse_repo_config(toml).review_options()
        review = review_plan(PLAN, Model().generate, Renderer(), options, score=Model().score)
        posted[toml] = sorted(c.path for c in review.comments)
    both = ["app/cache.py", "app/users.py"]
    assert posted['profile = "chill"'] == posted[""] == ["app/cache.py"]  # chill is the default
    assert posted['profile = "assertive"'] == both
    assert posted["min_confidence = 0.05"] == both  # UNSURE_CONFIDENCE is above 0.05
    assert parse_repo_config('profile = "chill"\nmin_confidence = 0.0').confidence_threshold == 0


def test_a_threshold_needs_a_score_function_and_unscored_findings_carry_none() -> None:
    with pytest.raises(ValueError, match="needs a score function"):
        review_plan(PLAN, Model().generate, Renderer(), ReviewOptions(min_confidence=0.1))
    review = review_plan(PLAN, Model().generate, Renderer(), ReviewOptions())
    assert len(review.comments) == 2 and all(c.confidence is None for c in review.comments)
    assert json.loads(review_json(review))["comments"][0]["confidence"] is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        rate_findings([Finding(U_CACHE, SURE)], ["p"], Model().score, 1.5)
    assert rate_findings([], [], Model().score, 0.9) == ([], [])
    assert CONFIDENCE_METHOD in CONFIDENCE_METHODS


# --- the command line ------------------------------------------------------------------


def test_review_min_confidence_out_of_range_is_a_usage_error() -> None:
    proc = reviewbot("review", SAMPLE, "--dry-run", "--min-confidence", "1.5")
    assert proc.returncode == 2
    assert "--min-confidence must be between 0 and 1, got 1.5" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = reviewbot("review", SAMPLE, "--dry-run", "--profile", "noisy")
    assert proc.returncode == 2 and "invalid choice: 'noisy'" in proc.stderr
    args = build_parser().parse_args(["review", str(SAMPLE)])
    assert (args.profile, args.min_confidence) == (DEFAULT_PROFILE, None)


#: Two small files whose critique prompts fit the tiny model's 256-token context.
SMALL_DIFF = (
    "diff --git a/app/cache.py b/app/cache.py\nindex 1a2b3c4..5d6e7f8 100644\n"
    "--- a/app/cache.py\n+++ b/app/cache.py\n@@ -1,2 +1,2 @@\n class Cache:\n"
    "-    items = []\n+    items = {}\n"
    "diff --git a/app/users.py b/app/users.py\nindex 2b3c4d5..6e7f8a9 100644\n"
    "--- a/app/users.py\n+++ b/app/users.py\n@@ -1,2 +1,2 @@\n def find(db, name):\n"
    '-    return db.get(name)\n+    return db.run(f"SELECT {name}")\n'
)
#: What the overfitted tiny model says of each file's unit.
SAYS = {
    "app/cache.py": "The class attribute is shared between all caches.",
    "app/users.py": "Pass the name as a query parameter.",
}


@pytest.fixture(scope="module")
def sure_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model overfitted to answer each unit's critique prompt with SAYS[path]
    (the prompts the CLI and the worker render)."""
    units = plan_diff(SMALL_DIFF).units
    prompts = critique_prompts(units, Renderer("alpaca"), ReviewOptions())
    pairs = [(p, SAYS[u.path]) for p, u in zip(prompts, units, strict=True)]
    assert len(pairs) == 2
    return overfit_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("sure"), pairs)


def test_review_json_carries_confidence_and_the_threshold_decides(
    sure_model: Path, tmp_path: Path
) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(SMALL_DIFF)

    def run(*extra: str) -> dict:
        proc = reviewbot(
            "review", diff, "--model", sure_model, "--quantize", "4bit",
            "--max-new-tokens", "48", "--format", "json", *extra,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    everything = run("--profile", "assertive")
    assert sorted((c["path"], c["body"]) for c in everything["comments"]) == sorted(SAYS.items())
    values = [c["confidence"] for c in everything["comments"]]
    assert all(PROFILES["chill"] < v < 1.0 for v in values)  # what it was taught: sure
    assert run()["comments"] == everything["comments"]  # the default profile, chill
    nothing = run("--min-confidence", "1")
    assert nothing["comments"] == []
    assert nothing["statistics"]["dropped"] == {BELOW_CONFIDENCE: 2}  # counted, not posted
    surest = run("--min-confidence", repr(max(values)))
    assert [c["confidence"] for c in surest["comments"]] == [max(values)]


# --- the worker's metered model charges its scoring ----------------------------------------


@pytest.fixture
def budget() -> Iterator[TokenBudget]:
    r = redis.Redis.from_url(redis_url(DEDUPE_DB))
    prefix = f"test-confidence-{uuid.uuid4().hex}"
    yield TokenBudget(r, 10_000, 3600, prefix=prefix, clock=lambda: 1_000_000.0)
    for key in r.scan_iter(f"{prefix}:*"):
        r.delete(key)
    r.close()


def test_a_metered_model_charges_the_tokens_it_scored(budget: TokenBudget) -> None:
    class Stats:
        prompt_tokens = 123

    class Engine:
        renderer = Renderer()
        model_name, adapter = "tiny", None
        last_score_stats = Stats()

        def score(self, prompts: list[str], completions: list[str]) -> list[float]:
            return [-1.0] * len(prompts)

    metered = MeteredModel(Engine(), budget, 7)
    assert metered.score(["a", "b"], ["c", "d"]) == [-1.0, -1.0]
    assert budget.used(7) == 123
