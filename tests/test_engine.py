"""The model engine on a tiny random Llama (4-bit NF4 on CPU) and on the demo model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from bitsandbytes.nn import Linear4bit, Params4bit
from tinymodel import LORA_TARGETS as PROJECTIONS
from tinymodel import overfit_tiny_model

from reviewbot.jobs.deadline import Deadline, DeadlineExceeded, job_deadline
from reviewbot.model.demo import MARKER, demo_model_dir, find_gguf, is_converted
from reviewbot.model.generation import Engine
from reviewbot.model.loading import ModelLoadError
from reviewbot.model.serving import load_engine
from reviewbot.model.tokens import truncate_middle
from reviewbot.review.confidence import confidence
from reviewbot.review.prompts import PromptFormatError, Renderer
from reviewbot.settings.defaults import (
    CACHE_ENV,
    DEMO_MODEL,
    NO_FINDING_ANSWER,
    GenerationSettings,
)

NEW = 12


def code(lines: int) -> str:
    return "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(lines))


def prompts(engine: Engine, sizes: tuple[int, ...] = (1, 6, 2, 9, 3, 4)) -> list[str]:
    return [engine.renderer.task("critique", ORIGINAL=code(n)) for n in sizes]


def load_tiny(path: Path, **kwargs) -> Engine:
    return load_engine(str(path), device="cpu", **kwargs)


@pytest.fixture(scope="module")
def tiny4(tiny_model_dir: Path) -> Engine:
    return load_tiny(tiny_model_dir, quantize="4bit", settings=GenerationSettings(batch_size=4))


def test_4bit_load_packs_every_decoder_linear(tiny4: Engine, tiny_model_dir: Path) -> None:
    assert tiny4.quantized and tiny4.device == "cpu"
    layers = tiny4.model.model.layers
    for layer in layers:
        for name in PROJECTIONS:
            module = layer.self_attn if name[0] in "qkvo" else layer.mlp
            linear = getattr(module, name)
            assert isinstance(linear, Linear4bit), name
            weight = linear.weight
            assert isinstance(weight, Params4bit) and weight.dtype == torch.uint8
            # two 4-bit values per byte
            assert weight.numel() * 2 == linear.in_features * linear.out_features
            assert weight.quant_state.quant_type == "nf4"
            assert weight.quant_state.nested  # double quantisation
    full = load_tiny(tiny_model_dir, quantize="none")
    assert tiny4.footprint_bytes < full.footprint_bytes


def test_quantize_none_and_auto_on_cpu_load_full_precision(tiny_model_dir: Path) -> None:
    for quantize in ("none", "auto"):
        engine = load_tiny(tiny_model_dir, quantize=quantize)
        assert not engine.quantized
        assert not any(isinstance(m, Linear4bit) for m in engine.model.modules())
        assert engine.model.dtype == torch.float32


def test_generation_is_non_empty_and_deterministic(tiny4: Engine) -> None:
    batch = prompts(tiny4)
    first = tiny4.generate(batch, max_new_tokens=NEW)
    stats = tiny4.last_stats
    assert len(first) == len(batch)
    assert all(text.strip() for text in first)
    assert tiny4.generate(batch, max_new_tokens=NEW) == first
    assert stats.prompts == len(batch) and stats.truncated == 0
    assert stats.generated_tokens == len(batch) * NEW  # the tiny model never emits EOS
    assert stats.prompt_tokens == sum(len(tiny4.encode(p, 10**6)[0]) for p in batch)
    assert stats.seconds > 0 and stats.first_output_seconds is not None


@pytest.mark.parametrize("quantize", ["4bit", "none"])
def test_batched_equals_one_at_a_time(tiny_model_dir: Path, quantize: str) -> None:
    engine = load_tiny(tiny_model_dir, quantize=quantize, settings=GenerationSettings(batch_size=4))
    batch = prompts(engine)
    lengths = [len(engine.encode(p, 10**6)[0]) for p in batch]
    assert len(set(lengths)) == len(batch)  # every batch is left-padded
    batched = engine.generate(batch, max_new_tokens=NEW)
    single = [engine.generate([p], max_new_tokens=NEW)[0] for p in batch]
    assert batched == single
    assert len(set(batched)) > 1  # the output depends on the prompt


def test_lora_adapter_changes_the_output(
    tiny4: Engine, tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    adapted = load_tiny(tiny_model_dir, adapter=str(tiny_adapter_dir), quantize="4bit")
    batch = prompts(tiny4)[:3]
    assert type(adapted.model).__name__.startswith("PeftModel")
    assert adapted.adapter_meta["base_model"] == str(tiny_model_dir)
    with_adapter = adapted.generate(batch, max_new_tokens=NEW)
    assert all(text.strip() for text in with_adapter)
    assert with_adapter != tiny4.generate(batch, max_new_tokens=NEW)
    assert adapted.generate(batch, max_new_tokens=NEW) == with_adapter


def test_truncate_middle_keeps_head_and_tail() -> None:
    assert truncate_middle(list(range(100)), 10) == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert truncate_middle([1, 2, 3], 3) == [1, 2, 3]


def test_too_long_prompt_is_cut_in_the_middle_and_still_generates(
    tiny4: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    context = tiny4.context_length
    assert context == 256
    assert tiny4.budgets(NEW) == (context - NEW, NEW)
    # Room for output is never taken below min_prompt_tokens.
    assert tiny4.budgets(1000) == (64, context - 64)
    long_prompt = tiny4.renderer.task("critique", ORIGINAL=code(200))
    ids, cut = tiny4.encode(long_prompt, context - NEW)
    text = tiny4.tokenizer.decode(ids, skip_special_tokens=True)
    assert cut and len(ids) == context - NEW
    assert text.startswith("Below is an instruction") and "Please critique" in text
    assert text.endswith("### Response:\n\n")
    with caplog.at_level(logging.WARNING, logger="reviewbot.model.generation"):
        out = tiny4.generate([long_prompt, prompts(tiny4)[0]], max_new_tokens=NEW)
    assert all(t.strip() for t in out)
    assert tiny4.last_stats.truncated == 1
    assert "dropping" in caplog.text


def test_prompt_format_selection(
    tiny_model_dir: Path, tiny_chat_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    assert load_tiny(tiny_model_dir).prompt_format == "alpaca"
    chat = load_tiny(tiny_chat_model_dir)
    assert chat.prompt_format == "chat"
    assert chat.renderer.wrap("hi") == "<|user|>\nhi</s>\n<|assistant|>\n"
    # The adapter's recorded format beats the tokenizer's chat template...
    adapted = load_tiny(tiny_chat_model_dir, adapter=str(tiny_adapter_dir))
    assert adapted.prompt_format == "alpaca"
    assert adapted.renderer.wrap("hi").endswith("### Response:\n\n")
    # ...an explicit choice beats the chat template, but never the adapter's recorded format.
    assert load_tiny(tiny_chat_model_dir, prompt_format="alpaca").prompt_format == "alpaca"
    same = load_tiny(tiny_chat_model_dir, adapter=str(tiny_adapter_dir), prompt_format="alpaca")
    assert same.prompt_format == "alpaca"
    with pytest.raises(ModelLoadError, match="trained with the 'alpaca' prompt format, not 'chat'"):
        load_tiny(tiny_chat_model_dir, adapter=str(tiny_adapter_dir), prompt_format="chat")
    with pytest.raises(PromptFormatError):
        load_tiny(tiny_model_dir, prompt_format="chat")


def test_bad_paths_and_options_are_clear_errors(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_engine(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_engine(str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"no adapter_config\.json"):
        load_tiny(tiny_model_dir, adapter=str(tmp_path))
    with pytest.raises(ValueError, match="quantize"):
        load_tiny(tiny_model_dir, quantize="8bit")
    assert issubclass(ModelLoadError, OSError)  # the CLI reports OSError as "cannot load model"


def test_demo_model_is_converted_once_and_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert find_gguf().suffix == ".gguf"
    with caplog.at_level(logging.INFO, logger="reviewbot"):
        engine = load_engine(DEMO_MODEL, device="cpu")
    assert "converting the demo model" in caplog.text
    converted = demo_model_dir()
    assert converted.parent == tmp_path / "models" and is_converted(converted)
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no temp dirs
    stamp = (converted / MARKER).stat().st_mtime_ns
    assert engine.prompt_format == "chat"  # the GGUF carries SmolLM2's chat template
    assert engine.renderer.wrap("hi").endswith("<|im_start|>assistant\n")
    out = engine.generate([engine.renderer.wrap("What does `len([1, 2])` return?")], 8)
    assert out[0].strip()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reviewbot"):
        again = load_engine(None, device="cpu", quantize="4bit")
    assert "converting" not in caplog.text
    assert (converted / MARKER).stat().st_mtime_ns == stamp
    assert again.quantized and again.footprint_bytes < engine.footprint_bytes


# --- scoring: the mean log-probability per token of a completion, teacher-forced --------

SAID = "Use a context manager so the file is closed."
UNSAID = "The variable name is unclear. Consider a more descriptive name."


@pytest.fixture(scope="module")
def sayer(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, str]:
    """The tiny model overfitted to answer one critique prompt with SAID, in 4-bit."""
    prompt = Renderer("alpaca").task("critique", ORIGINAL=code(2))
    path = overfit_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("sayer"), [(prompt, SAID)])
    engine = load_tiny(path, quantize="4bit", settings=GenerationSettings(batch_size=2))
    return engine, prompt


def test_score_ranks_what_the_model_says_above_what_it_does_not(
    sayer: tuple[Engine, str],
) -> None:
    engine, prompt = sayer
    assert engine.quantized
    assert engine.generate([prompt], max_new_tokens=24)[0].startswith(SAID)
    said, unsaid, nothing = engine.score([prompt] * 3, [SAID, UNSAID, NO_FINDING_ANSWER])
    assert -0.5 < said <= 0.0  # near-certain, token by token
    assert said > unsaid + 3 and said > nothing + 3
    assert confidence("contrast", said, nothing) > 0.95
    assert confidence("likelihood", unsaid, None) < confidence("likelihood", said, None)
    # the prompt went through the model once for its three completions
    stats = engine.last_score_stats
    assert stats.prompts == 3 and stats.truncated == 0 and stats.seconds > 0
    fed = len(engine.encode(prompt, 10**6)[0])
    fed += sum(len(engine.completion_ids(c)) for c in (SAID, UNSAID, NO_FINDING_ANSWER))
    assert stats.prompt_tokens == fed


def test_batched_scores_equal_one_at_a_time_in_input_order(sayer: tuple[Engine, str]) -> None:
    engine, prompt = sayer
    other = engine.renderer.task("critique", ORIGINAL=code(7))  # longer: padded batches
    # two prompts in one batch, continued from their cache in rounds (three and two
    # completions: the shorter one is padded in the third round)
    pairs = [
        (prompt, SAID),
        (other, SAID),
        (prompt, UNSAID),
        (other, "Add a docstring."),
        (prompt, NO_FINDING_ANSWER),
    ]
    batched = engine.score([p for p, _ in pairs], [c for _, c in pairs])
    single = [engine.score([p], [c])[0] for p, c in pairs]
    assert batched == pytest.approx(single, abs=1e-3)
    assert batched[0] > batched[1]  # the same words, but only the first prompt taught them
    assert engine.score([], []) == []


def test_score_fits_the_context_and_refuses_bad_input(sayer: tuple[Engine, str]) -> None:
    engine, prompt = sayer
    long_prompt = engine.renderer.task("critique", ORIGINAL=code(200))
    long_completion = " ".join(["word"] * 400)
    (short,) = engine.score([long_prompt], [SAID])
    assert engine.last_score_stats.truncated == 1
    assert engine.last_score_stats.prompt_tokens <= engine.context_length
    (cut,) = engine.score([prompt], [long_completion])  # its tail is cut to fit
    assert engine.last_score_stats.prompt_tokens <= engine.context_length
    assert short <= 0 and cut <= 0
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        engine.score([prompt, prompt], [SAID])
    with pytest.raises(ValueError, match="empty completion"):
        engine.score([prompt], [""])


def test_score_past_the_deadline_raises(sayer: tuple[Engine, str]) -> None:
    engine, prompt = sayer
    now = [0.0]
    deadline = Deadline(1, lambda: now[0])
    now[0] = 2.0
    with job_deadline(deadline), pytest.raises(DeadlineExceeded) as e:
        engine.score([prompt], [SAID])
    assert e.value.stage == "scoring"
    with job_deadline(Deadline(3600, lambda: 0.0)):
        assert engine.score([prompt], [SAID]) == engine.score([prompt], [SAID])


def test_score_runs_with_the_engines_adapter(
    tiny4: Engine, tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    adapted = load_tiny(tiny_model_dir, adapter=str(tiny_adapter_dir), quantize="4bit")
    prompt = prompts(tiny4)[0]
    assert adapted.score([prompt], [UNSAID]) != pytest.approx(tiny4.score([prompt], [UNSAID]))
