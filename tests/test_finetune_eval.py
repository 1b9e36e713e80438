"""``reviewbot finetune eval`` on the tiny random model in 4-bit, and the scoring core."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from finetune.encode import encode_example
from finetune.evaluate import (
    EvalSettings,
    Outputs,
    anchor_target,
    response_losses,
    score,
    unit_for,
)
from finetune.examples import Example
from finetune.sources import load_examples
from reviewbot.cli import main
from reviewbot.model.generation import Engine
from reviewbot.model.serving import load_engine

SAMPLE = Path(__file__).parent / "data" / "review-comments.sample.jsonl"
CRITIQUE_REVISION = [
    {
        "original": "def add(a, b):\n    return a+b",
        "critique": "Add spaces around the operator.",
        "revised": "def add(a, b):\n    return a + b",
        "summary": "Operator spacing.",
    }
]


@pytest.fixture(scope="module")
def tiny4(tiny_model_dir: Path) -> Engine:
    return load_engine(str(tiny_model_dir), quantize="4bit", device="cpu")


@pytest.fixture
def cr_file(tmp_path: Path) -> Path:
    path = tmp_path / "cr.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CRITIQUE_REVISION), encoding="utf-8")
    return path


def test_eval_cli_reports_every_metric_as_json(
    tiny_model_dir: Path, cr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = ["finetune", "eval", "--model", str(tiny_model_dir), "--device", "cpu"]
    argv += ["--data", str(cr_file), str(SAMPLE), "--limit", "7", "--out", str(out)]
    argv += ["--max-new-tokens", "8", "--revise-max-new-tokens", "16", "--batch-size", "4"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["quantized"] is True and printed["model"] == str(tiny_model_dir)
    assert printed["prompt_format"] == "alpaca" and printed["examples"] == 7
    loss = printed["loss"]
    assert math.isfinite(loss["mean"]) and loss["mean"] > 0 and loss["tokens"] > 0
    assert set(loss["by_task"]) == {"critique", "revise", "summarise"}
    assert sum(t["tokens"] for t in loss["by_task"].values()) == loss["tokens"]
    # A random model: perplexity near the vocabulary size, not 1.
    assert 50 < loss["perplexity"] < 5000
    for task in ("critique", "summarise"):
        assert printed[task]["n"] >= 1
        assert 0 <= printed[task]["bleu4"] <= 100 and 0 <= printed[task]["rouge_l"] <= 100
    assert printed["critique"]["n"] == 5
    revise = printed["revise"]
    assert revise["n"] == 1 and revise["exact_match"] == 0.0
    assert revise["reference_suggestion_valid"] == 1.0
    anchoring = printed["anchoring"]
    assert anchoring["n"] == 3  # the RIGHT-side review comments in the slice
    assert anchoring["posted"] <= 3
    assert set(printed["by_category"]) == {"(none)", "functional", "refactoring", "false positive"}
    assert printed["by_category"]["(none)"]["examples"] == 3
    assert printed["timing"]["generated_tokens"] > 0


def test_eval_cli_data_errors_exit_2_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    missing_model = str(tmp_path / "no-model")
    assert main(["finetune", "eval", "--model", missing_model, "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: unknown record format" in err and "Traceback" not in err
    assert main(["finetune", "eval", "--data", str(SAMPLE), "--limit", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert main(["finetune", "eval", "--model", missing_model, "--data", str(SAMPLE)]) == 1
    assert "cannot load model" in capsys.readouterr().err


def test_response_loss_is_the_models_own_loss_on_response_tokens(tiny4: Engine) -> None:
    examples = load_examples(SAMPLE)[:3]
    losses = response_losses(tiny4.model, tiny4.tokenizer, tiny4.renderer, examples, 256, 2)
    for ex, total, tokens in zip(examples, losses.sums, losses.tokens, strict=True):
        enc = encode_example(tiny4.tokenizer, tiny4.renderer, ex, 256)
        assert tokens == enc.response_tokens - (enc.labels[0] != -100)
        with torch.inference_mode():
            own = tiny4.model(
                input_ids=torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels])
            ).loss
        assert total / tokens == pytest.approx(float(own), rel=1e-4)


def references_as_outputs(examples: list[Example]) -> Outputs:
    """Completions equal to the references (a revise completion for anchoring too)."""
    revisions = {
        e.provenance["line"]: e.target
        for e in examples
        if e.task == "revise" and "line" in e.provenance
    }
    anchored = {
        i: revisions.get(e.provenance.get("line"), "")
        for i, e in enumerate(examples)
        if anchor_target(e) is not None
    }
    return Outputs(tuple(e.target for e in examples), anchored)


def test_references_against_themselves_score_perfectly(cr_file: Path) -> None:
    examples = load_examples(cr_file) + load_examples(SAMPLE)
    result = score(examples, None, references_as_outputs(examples), EvalSettings())
    assert result["critique"]["bleu4"] == 100.0 and result["critique"]["rouge_l"] == 100.0
    assert result["summarise"] == {
        "n": 1,
        "bleu4": 100.0,
        "bleu4_with_stopwords": 100.0,
        "rouge_l": 100.0,
    }
    assert result["revise"] == {
        "n": 3,
        "exact_match": 1.0,
        "suggestion_valid": 1.0,
        "reference_suggestion_valid": 1.0,
    }
    anchoring = result["anchoring"]
    assert anchoring["n"] == 5 and anchoring["posted"] == 5 and anchoring["accuracy"] == 1.0
    assert "loss" not in result
    assert result["by_category"]["documentation"]["revise"]["exact_match"] == 1.0


def test_wrong_outputs_score_zero(cr_file: Path) -> None:
    examples = load_examples(cr_file) + load_examples(SAMPLE)
    wrong = Outputs(tuple("zzz qqq" for _ in examples), {})
    result = score(examples, None, wrong, EvalSettings())
    assert result["critique"]["rouge_l"] == 0.0 and result["critique"]["bleu4"] < 1.0
    assert result["revise"]["exact_match"] == 0.0 and result["revise"]["suggestion_valid"] == 0.0
    assert result["anchoring"]["posted"] == 0 and result["anchoring"]["coverage"] == 0.0


def test_a_suggestion_off_the_humans_line_misses_the_anchor() -> None:
    [critique, revise] = [e for e in load_examples(SAMPLE) if e.provenance["line"] == 4]
    assert anchor_target(critique) == 94
    unit = unit_for(critique)
    assert (unit.start_line, unit.end_line, unit.added_lines) == (90, 94, (93, 94))
    lines = critique.fields["ORIGINAL"].split("\n")
    off = "\n".join([lines[0] + "  # changed", *lines[1:]])  # a suggestion on line 90
    result = score([critique], None, Outputs((critique.target,), {0: off}), EvalSettings())
    assert result["anchoring"] == {
        "n": 1,
        "posted": 1,
        "covered": 0,
        "accuracy": 0.0,
        "exact_line": 0.0,
        "coverage": 0.0,
    }
    hit = score([critique], None, Outputs((critique.target,), {0: revise.target}), EvalSettings())
    assert hit["anchoring"]["exact_line"] == 1.0
