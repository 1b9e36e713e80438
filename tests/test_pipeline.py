"""The pure review pipeline, driven by a scripted generate function."""

import pytest

from reviewbot.review.findings import Finding
from reviewbot.review.pipeline import critique_prompts, review_plan, revise_prompts
from reviewbot.review.prompts import Renderer, render_task, unit_original
from reviewbot.review.units import Plan, ReviewUnit, Skipped
from reviewbot.settings.defaults import ReviewOptions

CACHE = (
    "class Cache:\n    def __init__(self, ttl, items={}):\n"
    "        self.ttl = ttl\n        self.items = items"
)
QUERY = (
    "def find(conn, name):\n    cur = conn.cursor()\n"
    '    cur.execute("SELECT * WHERE n=\'" + name + "\'")'
)
DOCS = "# Usage\n\nRun the tool."

U_CACHE = ReviewUnit("app/cache.py", 4, 7, "@@ -4,4 +4,4 @@", CACHE, added_lines=(5, 7))
U_QUERY = ReviewUnit("app/users.py", 20, 22, "@@ -19,0 +20,3 @@", QUERY, added_lines=(20, 21, 22))
U_DOCS = ReviewUnit("README.md", 1, 3, "@@ -1,2 +1,3 @@", DOCS, added_lines=(3,))
PLAN = Plan((U_CACHE, U_QUERY, U_DOCS), (Skipped("poetry.lock", "lockfile"),))

CRITIQUES = {
    CACHE: "Avoid the mutable default argument `items={}`: it is shared between instances.",
    QUERY: "The query concatenates user input into SQL; use a parameterised query.",
    DOCS: "Looks good.",
}
REVISIONS = {
    CACHE: "```python\n"
    + CACHE.replace("items={}", "items=None").replace(
        "self.items = items", "self.items = {} if items is None else items"
    )
    + "\n```",
    QUERY: "Use an ORM instead.",  # prose, not code: dropped (counted)
}


class ScriptedModel:
    """Answers each prompt by the task it renders; records every prompt."""

    def __init__(self, renderer):
        self.renderer = renderer
        self.prompts = []

    def __call__(self, prompts):
        self.prompts.append(list(prompts))
        return [self.answer(p) for p in prompts]

    def answer(self, prompt):
        for unit in PLAN.units:
            critique = CRITIQUES[unit.original]
            if prompt == critique_prompts([unit], self.renderer)[0]:
                return critique
            if prompt == revise_prompts([Finding(unit, critique)], self.renderer)[0]:
                return REVISIONS[unit.original]
        if "Please summarise" in prompt:
            return "The constructor shared one dict between all caches."
        raise AssertionError(f"unexpected prompt: {prompt[:200]}")


def run(options, renderer=None):
    renderer = renderer or Renderer("alpaca")
    model = ScriptedModel(renderer)
    return review_plan(PLAN, model, renderer, options), model


def test_critique_only_review_anchors_on_added_lines_and_drops_noise():
    review, model = run(ReviewOptions())
    assert len(model.prompts) == 1  # one batched call for all critiques
    assert model.prompts[0] == [
        Renderer().task("critique", ORIGINAL=unit_original(u, marked=True)) for u in PLAN.units
    ]
    assert [(c.path, c.start_line, c.line, c.side) for c in review.comments] == [
        ("app/cache.py", 5, 7, "RIGHT"),
        ("app/users.py", 20, 22, "RIGHT"),
    ]
    assert review.comments[0].body == CRITIQUES[CACHE]
    assert all(c.suggestion is None for c in review.comments)
    assert [(d.path, d.reason) for d in review.dropped] == [("README.md", "no finding")]
    assert review.skipped == PLAN.skipped
    assert review.summary is None


def test_revise_maps_suggestions_onto_exactly_the_changed_lines():
    review, model = run(ReviewOptions(revise=True))
    assert len(model.prompts) == 2
    # revise prompts carry the critique as COMMENT, through the same renderer
    assert model.prompts[1][0] == Renderer().wrap(
        render_task(
            "revise", ORIGINAL="FILE: app/cache.py (Python)\n" + CACHE, CRITIQUE=CRITIQUES[CACHE]
        )
    )
    cache, query = review.comments
    assert (cache.start_line, cache.line) == (5, 7)
    assert cache.suggestion == (
        "    def __init__(self, ttl, items=None):\n        self.ttl = ttl\n"
        "        self.items = {} if items is None else items"
    )
    assert "```suggestion\n" + cache.suggestion + "\n```" in cache.body
    # a revision in prose is no revision: the critique alone, the drop counted
    assert query.suggestion is None
    assert query.body == CRITIQUES[QUERY]
    assert [(d.path, d.reason) for d in review.dropped] == [
        ("README.md", "no finding"),
        ("app/users.py", "revision not code"),
    ]
    assert len({cache.fingerprint, query.fingerprint}) == 2


def test_summary_runs_summarise_over_revised_units():
    review, model = run(ReviewOptions(summary=True))
    summarise_prompts = model.prompts[2]
    assert len(summarise_prompts) == 1  # the prose "revision" of the query is no revision
    revised = REVISIONS[CACHE].split("\n", 1)[1].rsplit("\n", 1)[0]
    assert summarise_prompts[0] == Renderer().task(
        "summarise", ORIGINAL="FILE: app/cache.py (Python)\n" + CACHE, REVISED=revised
    )
    assert review.summary.startswith("- `app/cache.py` lines 4–7: The constructor shared one dict")
    assert all(c.suggestion is None for c in review.comments)  # summary alone posts no suggestion


def test_near_duplicate_findings_are_merged():
    twin = ReviewUnit(
        "app/cache2.py", 1, 4, "@@ -1,4 +1,4 @@", CACHE.replace("Cache", "Cache2"), added_lines=(2,)
    )
    plan = Plan((U_CACHE, twin))

    def generate(prompts):
        return [CRITIQUES[CACHE]] * len(prompts)

    review = review_plan(plan, generate, Renderer(), ReviewOptions())
    assert len(review.comments) == 1
    assert review.comments[0].body.endswith("Also applies to: `app/cache2.py` lines 1–4.")


def test_garbage_completions_produce_no_comments_and_lose_nothing():
    def garbage(prompts):
        return ["", "```\n" + QUERY + "\n```", "the the the " * 200][: len(prompts)]

    review = review_plan(PLAN, garbage, Renderer(), ReviewOptions(revise=True, summary=True))
    assert review.comments == ()
    assert len(review.dropped) == 3
    assert len(review.units) == 3 and review.summary is None


def test_generate_returning_the_wrong_count_is_an_error():
    with pytest.raises(RuntimeError, match="2 completions for 3 prompts"):
        review_plan(PLAN, lambda ps: ["x", "y"], Renderer(), ReviewOptions())


def test_empty_plan_calls_no_model():
    def never(prompts):
        raise AssertionError("generate called")

    review = review_plan(Plan(), never, Renderer(), ReviewOptions(revise=True, summary=True))
    assert review.comments == () and review.units == ()


def test_json_shape():
    review, _ = run(ReviewOptions(revise=True))
    doc = review.to_json()
    assert set(doc) == {"units", "comments", "summary", "skipped", "statistics"}
    assert set(doc["units"][0]) == {"path", "start_line", "end_line", "original"}
    assert set(doc["comments"][0]) == {
        "path",
        "start_line",
        "line",
        "side",
        "body",
        "suggestion",
        "confidence",
    }
    assert doc["skipped"] == [{"path": "poetry.lock", "reason": "lockfile"}]
