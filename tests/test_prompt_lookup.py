"""Prompt-lookup decoding of revisions: the same greedy output as batched decoding.

On the tiny random Llama through the production loading path (full precision and
4-bit NF4 on CPU); the pipeline's use of it is observed through the engine's model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from reviewbot.model.generation import Engine
from reviewbot.model.serving import load_engine
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.pipeline import copying, review_plan
from reviewbot.review.prompts import Renderer
from reviewbot.settings.defaults import GenerationSettings, ReviewOptions

LOOKUP = 4
SETTINGS = GenerationSettings(
    max_new_tokens=24, batch_size=3, prompt_lookup_tokens=LOOKUP, prompt_lookup_max_prompts=8
)
CODES = (
    "x = 1",
    "def add(a, b):\n    return a + b",
    "for i in range(len(items)):\n    if items[i] is None:\n        continue\n" * 3,
    "try:\n    value = int(text)\nexcept ValueError:\n    value = 0",
    "class Cache:\n    def __init__(self):\n        self.data = {}\n" * 2,
)


@dataclass
class Calls:
    """What ``model.generate`` was asked: (batch size, prompt-lookup tokens, prompt texts)."""

    seen: list[tuple[int, int | None, list[str]]] = field(default_factory=list)

    def lookup(self) -> list[tuple[int, int | None, list[str]]]:
        return [c for c in self.seen if c[1]]

    def plain(self) -> list[tuple[int, int | None, list[str]]]:
        return [c for c in self.seen if not c[1]]


@pytest.fixture(scope="module", params=["none", "4bit"])
def engine(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Engine:
    return load_engine(str(tiny_model_dir), device="cpu", quantize=request.param, settings=SETTINGS)


@pytest.fixture
def calls(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Records every ``engine.model.generate`` call (the transformers model, not reviewbot)."""
    record = Calls()
    real = engine.model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs["input_ids"]
        texts = engine.tokenizer.batch_decode(ids, skip_special_tokens=True)
        config = kwargs["generation_config"]
        record.seen.append((ids.shape[0], config.prompt_lookup_num_tokens, texts))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", spy)
    yield record


def revise(engine: Engine) -> list[str]:
    comment = "Use a context manager so the file is closed."
    return [engine.renderer.task("revise", ORIGINAL=c, CRITIQUE=comment) for c in CODES]


def test_lookup_outputs_equal_batched_token_for_token(engine: Engine, calls: Calls) -> None:
    prompts = revise(engine)
    batched = engine.generate(prompts)
    plain = engine.last_stats
    looked = engine.generate_copying(prompts)
    stats = engine.last_stats
    assert looked == batched
    assert all(text.strip() for text in looked)
    # the same token ids, not just the same text
    ids = [engine.completion_ids(t) for t in batched]
    assert [engine.completion_ids(t) for t in looked] == ids
    # batched: 3 + 2 prompts, no lookup; copying: one prompt at a time, with lookup
    assert [(n, k) for n, k, _ in calls.seen] == [(3, None), (2, None)] + [(1, LOOKUP)] * 5
    assert (stats.prompts, stats.prompt_tokens) == (plain.prompts, plain.prompt_tokens)
    assert stats.generated_tokens == plain.generated_tokens
    assert stats.seconds > 0 and stats.first_output_seconds is not None


def variant(engine: Engine, **settings: int) -> Engine:
    """Another engine on the same model, with other generation settings."""
    return Engine(
        engine.model,
        engine.tokenizer,
        engine.renderer,
        model_name=engine.model_name,
        device=engine.device,
        quantized=engine.quantized,
        settings=replace(SETTINGS, **settings),
    )


def test_lookup_off_batches_revisions(engine: Engine, calls: Calls) -> None:
    off = variant(engine, prompt_lookup_tokens=0)
    assert off.lookup_tokens() == 0
    assert off.generate_copying(revise(engine)[:2]) == engine.generate(revise(engine)[:2])
    assert [(n, k) for n, k, _ in calls.seen] == [(2, None), (2, None)]


def test_more_prompts_than_the_limit_batch_with_lookup_for_a_lone_one(
    engine: Engine, calls: Calls
) -> None:
    default = variant(engine, prompt_lookup_max_prompts=1)
    prompts = revise(engine)[:4]
    assert default.generate_copying(prompts) == engine.generate(prompts)
    assert default.generate_copying(prompts[:1]) == engine.generate(prompts[:1])
    # copying 4 prompts: a batch of 3, the lone 4th with lookup; then plain 4; copying
    # 1 prompt: alone, with lookup; then plain 1
    assert [(n, k) for n, k, _ in calls.seen] == [
        (3, None),
        (1, LOOKUP),
        (3, None),
        (1, None),
        (1, LOOKUP),
        (1, None),
    ]


SOURCE = "\n".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(40))


def diff() -> str:
    """A diff with three separate hunks in one file."""
    import difflib

    after = SOURCE.replace("x + 3", "x - 3").replace("x + 20", "x * 20").replace("x + 37", "37")
    lines = difflib.unified_diff(
        SOURCE.splitlines(keepends=True), after.splitlines(keepends=True), "a/m.py", "b/m.py"
    )
    return "".join(lines)


def test_pipeline_uses_lookup_for_revise_prompts_only(engine: Engine, calls: Calls) -> None:
    plan = plan_diff(diff())
    options = ReviewOptions(revise=True, summary=True)
    review = review_plan(plan, engine.generate, engine.renderer, options)
    revise_calls = [c for c in calls.seen if any("Please revise" in t for t in c[2])]
    assert revise_calls, "the review revised nothing"
    assert calls.lookup() == revise_calls
    assert all(n == 1 for n, _, _ in revise_calls)
    assert all("Please revise" not in t for _, _, texts in calls.plain() for t in texts)
    assert any("Please critique" in t for _, _, texts in calls.plain() for t in texts)
    assert len(review.units) == len(plan.units) == 3


class Fake:
    """A ModelPort with ``generate_copying``: records which prompts each method got."""

    renderer = Renderer()

    def __init__(self) -> None:
        self.plain: list[str] = []
        self.copied: list[str] = []

    def generate(self, prompts: list[str]) -> list[str]:
        self.plain += prompts
        return ["The name `x` is unclear; call it `count` instead." for _ in prompts]

    def generate_copying(self, prompts: list[str]) -> list[str]:
        self.copied += prompts
        return ["```python\ncount = 1\n```" for _ in prompts]


def test_copying_picks_the_models_method_and_falls_back() -> None:
    fake = Fake()
    assert copying(fake.generate) == fake.generate_copying

    def plain(prompts: list[str]) -> list[str]:
        return prompts

    assert copying(plain) is plain
    options = ReviewOptions(revise=True)
    review = review_plan(plan_diff(diff()), fake.generate, fake.renderer, options)
    assert fake.copied and all("Please revise" in p for p in fake.copied)
    assert fake.plain and all("Please revise" not in p for p in fake.plain)
    assert review.comments
