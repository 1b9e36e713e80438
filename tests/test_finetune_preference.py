"""finetune train --preference / eval --outcomes on the tiny 4-bit model: records, KTO, measure."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from finetune.preference import (
    PreferenceSettings,
    auc,
    confidence_stats,
    held_out,
    kto_order,
    kto_rows,
    kto_weights,
    read_outcomes,
    train_preference,
)
from finetune.train import TrainError
from reviewbot.cli import main
from reviewbot.learning.records import RecordError
from reviewbot.model.serving import load_engine
from reviewbot.review.pipeline import critique_prompts
from reviewbot.review.prompts import template_fingerprint
from reviewbot.settings.defaults import (
    ADAPTER_METADATA,
    LOSS_LOG,
    PREFERENCE_EVAL_PERCENT,
    TrainSettings,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIFF = ROOT / "examples" / "sample.diff"

#: Distinct code units, each with the critique reviewbot posted on it and what became of it.
FINDINGS = [
    ("def add(a, b):\n    return a + b\n", "accepted",
     "This function does not handle the error case; raise an exception instead."),
    ("import os\nimport sys\n", "rejected", "The variable name is unclear."),
    ("try:\n    value = int(text)\nexcept ValueError:\n    value = 0\n", "accepted",
     "Use a context manager so the file is closed."),
    ("SELECT id, name FROM users WHERE active = 1;\n", "rejected",
     "Consider a more descriptive name."),
    ("def load(path: str) -> dict:\n    with open(path) as f:\n        return json.load(f)\n",
     "accepted", "This function does not handle the error case."),
    ("for i in range(len(items)):\n    if items[i] is None:\n        continue\n", "rejected",
     "The name is unclear. Consider a more descriptive name."),
    ("class Cache:\n    def __init__(self):\n        self.data = {}\n", "accepted",
     "Use a context manager."),
    ("function main() { const x = await fetch(url); return x.json(); }\n", "rejected",
     "Consider a descriptive variable name."),
]  # fmt: skip


def record(i: int, code: str, label: str, critique: str, **extra: Any) -> dict[str, Any]:
    """A labelled finding as ``export_record`` writes it (the keys training reads)."""
    return {
        "label": label,
        "evidence": [],
        "fingerprint": f"finding-{i}",
        "repo": "acme/app",
        "pr": 100 + i,
        "path": f"src/mod{i}.py" if not code.startswith(("SELECT", "function")) else f"web/f{i}",
        "side": "RIGHT",
        "start_line": 3,
        "line": 4,
        "unit_start_line": 3,
        "changed": [3, 4],
        "original": code,
        "critique": critique,
        "suggestion": None,
        "confidence": 0.6,
        **extra,
    }


RECORDS = [record(i, *f) for i, f in enumerate(FINDINGS)]
#: Left out (unknown), desirable (a human comment, no fingerprint), and a line replaced by
#: a later one of the same fingerprint.
EXTRA = [
    record(20, "x = 1\n", "unknown", "Consider a constant."),
    {**record(21, "y = 2\n", "human", "Name this constant."), "fingerprint": None},
    {**RECORDS[0], "label": "unknown"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is far faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def outcomes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The duplicate first, so that the later line (accepted) is the one kept.
    rows = [EXTRA[2], *RECORDS, EXTRA[0], EXTRA[1]]
    return write_jsonl(tmp_path_factory.mktemp("outcomes") / "outcomes.jsonl", rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, outcomes_file: Path):
    """KTO on the 4-bit tiny model from a fresh LoRA, every finding trained on, via the CLI."""
    out = tmp_path_factory.mktemp("kto") / "adapter"
    code = cli(
        "finetune", "train", "--preference", outcomes_file, "--out", out,
        "--base", tiny_model_dir, "--quantize", "4bit", "--lr", "1e-2", "--max-steps", "20",
        "--batch-size", "4", "--eval-percent", "0", "--logging-steps", "5",
        "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert code == 0
    return out


# --------------------------------------------------------------------------- records


def test_held_out_is_the_fingerprint_hash_modulo_100() -> None:
    fingerprints = [f"fp-{i}" for i in range(2000)]
    for fp in fingerprints[:50]:
        bucket = int(hashlib.sha256(fp.encode()).hexdigest(), 16) % 100
        assert held_out(fp, 20) == (bucket < 20)
    share = sum(held_out(fp, PREFERENCE_EVAL_PERCENT) for fp in fingerprints) / len(fingerprints)
    assert abs(share - PREFERENCE_EVAL_PERCENT / 100) < 0.04
    assert not any(held_out(fp, 0) for fp in fingerprints)
    assert all(held_out(fp, 100) for fp in fingerprints)


def test_records_are_deduplicated_labelled_and_counted(outcomes_file: Path) -> None:
    outcomes = read_outcomes(outcomes_file)
    assert outcomes.counts() == {
        "accepted": 4, "rejected": 4, "human": 1, "unknown": 1, "duplicates": 1,
    }  # fmt: skip
    first = next(r for r in outcomes.records if r.fingerprint == "finding-0")
    assert first.label == "accepted" and first.desirable is True  # the later line won
    human = next(r for r in outcomes.records if r.label == "human")
    assert (
        human.desirable is True and not human.finding and human.fingerprint.startswith("content:")
    )
    train, held = outcomes.split(0)
    assert len(train) == 9 and held == []  # unknown left out
    assert len(outcomes.findings(None)) == 8  # human comments are not findings
    train, held = outcomes.split(50)
    # The held-out findings are exactly those eval measures; human comments always train.
    assert held and held == outcomes.findings(50)
    assert all(held_out(r.fingerprint, 50) for r in held)
    assert human in train and len(train) + len(held) == 9


def test_examples_are_prompted_and_encoded_as_serving_does(
    tiny_model_dir: Path, outcomes_file: Path
) -> None:
    engine = load_engine(str(tiny_model_dir), quantize="none", device="cpu")
    records = read_outcomes(outcomes_file).records
    example = records[0].example
    assert example.task == "critique" and example.target == FINDINGS[0][2]
    assert example.provenance == {"fingerprint": "finding-0", "pr": 100, "label": "accepted"}
    # The prompt the pipeline renders for the same unit (path, start line, changed lines).
    assert critique_prompts([example.unit()], engine.renderer) == [example.prompt(engine.renderer)]
    assert "src/mod0.py" in example.prompt(engine.renderer)
    rows = kto_rows(engine.tokenizer, engine.renderer, records, 256)
    for rec, row in zip(records, rows, strict=True):
        prompt = rec.example.prompt(engine.renderer)
        assert row["prompt_ids"] == engine.encode(prompt, 10**6)[0]
        eos = engine.tokenizer.eos_token_id
        assert row["completion_ids"] == [*engine.completion_ids(rec.example.target), eos]
        assert row["label"] is bool(rec.desirable)


def test_order_mixes_both_kinds_and_weights_balance_them(outcomes_file: Path) -> None:
    train, _ = read_outcomes(outcomes_file).split(0)
    ordered = kto_order(train, seed=3)
    assert sorted(r.fingerprint for r in ordered) == sorted(r.fingerprint for r in train)
    assert ordered == kto_order(train, seed=3) != kto_order(train, seed=4)
    labels = [bool(r.desirable) for r in ordered]
    assert labels == [True, False] * 4 + [True]  # every batch holds both kinds
    lopsided = [r for r in train if r.desirable] + [r for r in train if not r.desirable][:1]
    assert [bool(r.desirable) for r in kto_order(lopsided, 1)] == [True] * 3 + [False] + [True] * 2
    assert kto_weights(5, 4, PreferenceSettings()) == (1.0, 1.25)
    assert kto_weights(2, 6, PreferenceSettings()) == (3.0, 1.0)
    assert kto_weights(2, 6, PreferenceSettings(undesirable_weight=0.5)) == (1.0, 0.5)


def test_bad_records_are_named_by_line(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(RECORDS[0]) + "\n"
        + "{not json\n"
        + json.dumps({k: v for k, v in RECORDS[1].items() if k != "critique"}) + "\n"
        + "\n"
        + json.dumps({**RECORDS[2], "label": "maybe"}) + "\n"
        + json.dumps({**RECORDS[3], "fingerprint": 7}) + "\n"
        + json.dumps({**RECORDS[4], "unit_start_line": True}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    with pytest.raises(RecordError) as caught:
        read_outcomes(bad)
    lines = str(caught.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{bad}:{n}" for n in (2, 3, 5, 6, 7)]
    assert "not JSON" in lines[0] and "missing key(s) critique" in lines[1]
    assert "unknown label 'maybe'" in lines[2] and "fingerprint is not a string" in lines[3]
    out = tmp_path / "out"
    assert cli("finetune", "train", "--preference", bad, "--output", out,
               "--base", tiny_model_dir, "--device", "cpu") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"{bad}:3: missing key(s) critique" in err and "Traceback" not in err
    assert cli("finetune", "eval", "--outcomes", bad, "--model", tiny_model_dir) == 2
    assert f"{bad}:2: not JSON" in capsys.readouterr().err
    assert not out.exists()


def test_one_sided_data_and_bad_options_are_clear_errors(
    tmp_path: Path, tiny_model_dir: Path, outcomes_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accepted = write_jsonl(
        tmp_path / "accepted.jsonl", [r for r in RECORDS if r["label"] == "accepted"]
    )
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    out = tmp_path / "out"
    base = ("finetune", "train", "--output", out, "--base", tiny_model_dir, "--device", "cpu")
    pref = (*base, "--preference", outcomes_file)
    cases = [
        ((*base, "--preference", accepted),
         "needs at least one accepted (or human) and one rejected finding"),
        ((*base, "--preference", accepted), "4 accepted, 0 rejected"),
        ((*pref, "--eval-percent", "99"), "held out for eval (--eval-percent)"),
        ((*base, "--preference", empty), "no records"),
        ((*base, "--preference", tmp_path / "missing.jsonl"), "no such file"),
        ((*pref, "--batch-size", "1"), "--batch-size of at least 2"),
        ((*pref, "--packing"), "--packing does not apply"),
        ((*pref, "--beta", "0"), "beta must be positive"),
        ((*pref, "--eval-percent", "100"), "eval percent must be in [0, 100)"),
        ((*pref, "--data", outcomes_file), "separate runs"),
        (base, "one of --data or --preference is required"),
        ((*pref, "--adapter", tmp_path / "nope"), "does not exist"),
        ((*pref, "--adapter", tmp_path), "not a PEFT adapter"),
        (("finetune", "eval", "--model", tiny_model_dir), "one of --data or --outcomes"),
        (("finetune", "eval", "--outcomes", outcomes_file, "--data", outcomes_file), "not both"),
        (("finetune", "eval", "--outcomes", outcomes_file, "--eval-percent", "0"),
         "no held-out (0%) accepted or rejected findings"),
    ]  # fmt: skip
    for args, message in cases:
        assert cli(*args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert not out.exists()
    with pytest.raises(TrainError, match="0 rejected"):
        train_preference(str(tiny_model_dir), accepted, out, TrainSettings(quantize="4bit"))


# --------------------------------------------------------------------------- training


def test_preference_run_trains_a_loadable_adapter(
    trained: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = load_file(trained / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.dtype == torch.float32 for v in weights.values())
    # A fresh LoRA starts with B = 0 (the adapter is the base): training moved every one.
    assert all(v.abs().max() > 0 for v in lora_b.values())
    assert not (trained / "ref").exists()  # TRL's frozen reference copy is not saved
    meta = json.loads((trained / ADAPTER_METADATA).read_text())
    assert meta["stage"] == "preference" and meta["method"] == "kto"
    assert meta["base_model"] == str(tiny_model_dir) and meta["base_quantized"] is True
    assert meta["prompt_format"] == "alpaca"
    assert meta["template_fingerprint"] == template_fingerprint()
    assert meta["steps"] == 20 and meta["start_adapter"] is None
    data = meta["data"]
    assert (data["desirable"], data["undesirable"], data["examples"]) == (5, 4, 9)
    assert data["records"]["unknown"] == 1 and data["records"]["duplicates"] == 1
    assert data["held_out"] == 0 and data["held_out_fingerprints"] == []
    assert meta["preference"]["undesirable_weight"] == 1.25  # 4 rejected weigh as 5 accepted
    assert meta["metrics"]["kto"]["rewards/margins"] > 0
    log = [json.loads(line) for line in (trained / LOSS_LOG).read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) >= 4 and losses[-1] < losses[0]
    # Serving loads it (base check, recorded format), and `reviewbot review` runs with it.
    engine = load_engine(str(tiny_model_dir), adapter=str(trained), quantize="4bit", device="cpu")
    assert engine.adapter == str(trained) and engine.adapter_meta["stage"] == "preference"
    capsys.readouterr()
    assert cli("review", SAMPLE_DIFF, "--model", tiny_model_dir, "--adapter", trained,
               "--quantize", "4bit", "--max-new-tokens", "4", "--format", "json") == 0  # fmt: skip
    json.loads(capsys.readouterr().out)


def test_preference_moves_the_confidence_of_accepted_above_rejected(
    trained: Path, tiny_model_dir: Path, outcomes_file: Path, tmp_path: Path
) -> None:
    report = tmp_path / "eval.json"
    code = cli(
        "finetune", "eval", "--outcomes", outcomes_file, "--model", tiny_model_dir,
        "--adapter", trained, "--quantize", "4bit", "--all", "--device", "cpu", "--out", report,
    )  # fmt: skip
    assert code == 0
    result = json.loads(report.read_text())
    print(json.dumps({k: result[k] for k in ("findings", "before", "after")}, indent=1))
    assert {
        "model", "adapter", "prompt_format", "quantized", "device", "outcomes",
        "confidence_method", "split", "eval_percent", "records", "findings", "accepted",
        "rejected", "before", "after",
    } <= set(result)  # fmt: skip
    assert result["split"] == "all" and result["confidence_method"] == "contrast"
    assert (result["findings"], result["accepted"], result["rejected"]) == (8, 4, 4)
    before, after = result["before"], result["after"]
    for stats in (before, after):
        assert set(stats) == {
            "mean_confidence_accepted", "mean_confidence_rejected", "separation", "auc",
        }  # fmt: skip
        gap = stats["mean_confidence_accepted"] - stats["mean_confidence_rejected"]
        assert stats["separation"] == pytest.approx(gap, abs=1e-5)
    # The random base barely tells them apart; after KTO accepted findings score clearly higher.
    assert abs(before["separation"]) < 0.05
    # (seeds 1-8: separation 0.25 to 0.31 after, -0.0004 before; AUC 1.0 after, 0.44 before)
    assert after["separation"] > before["separation"] + 0.15
    assert after["auc"] > max(before["auc"], 0.8)


def test_continuing_an_adapter_holds_findings_out_for_eval(
    tiny_model_dir: Path,
    tiny_adapter_dir: Path,
    outcomes_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "continued"
    options = TrainSettings(quantize="4bit", learning_rate=5e-3, max_steps=4, batch_size=2)
    with pytest.raises(TrainError, match="trained with the 'alpaca' prompt format"):
        train_preference(
            str(tiny_model_dir), outcomes_file, out,
            TrainSettings(quantize="4bit", prompt_format="chat"), adapter=tiny_adapter_dir,
        )  # fmt: skip
    result = train_preference(
        str(tiny_model_dir), outcomes_file, out, options, PreferenceSettings(eval_percent=50),
        adapter=tiny_adapter_dir, device="cpu", progress=False,
    )  # fmt: skip
    meta = result.metadata
    assert meta["start_adapter"]["path"] == str(tiny_adapter_dir.resolve())
    assert meta["preference"]["reference"] == "start adapter"
    expected = sorted(r.fingerprint for r in read_outcomes(outcomes_file).findings(50))
    assert expected and meta["data"]["held_out_fingerprints"] == expected
    assert meta["data"]["examples"] == 9 - len(expected)
    start = load_file(tiny_adapter_dir / "adapter_model.safetensors")
    now = load_file(out / "adapter_model.safetensors")
    assert start.keys() == now.keys() and any(not torch.equal(start[k], now[k]) for k in start)
    # eval --outcomes takes the adapter's recorded split by default: the held-out findings.
    capsys.readouterr()
    assert cli("finetune", "eval", "--outcomes", outcomes_file, "--model", tiny_model_dir,
               "--adapter", out, "--device", "cpu") == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    findings = read_outcomes(outcomes_file).findings(50)
    assert report["split"] == "held_out" and report["eval_percent"] == 50
    assert report["findings"] == len(findings) and report["after"] is not None
    # Without an adapter: the base alone.
    assert cli("finetune", "eval", "--outcomes", outcomes_file, "--model", tiny_model_dir,
               "--all", "--device", "cpu") == 0  # fmt: skip
    base_only = json.loads(capsys.readouterr().out)
    assert base_only["after"] is None and base_only["adapter"] is None
    assert base_only["findings"] == 8


# --------------------------------------------------------------------------- measure


def test_auc_and_confidence_stats() -> None:
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5, 0.7], [0.5, 0.6]) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert auc([], [0.3]) is None
    stats = confidence_stats([0.9, 0.6, 0.2, 0.4], [True, True, False, False])
    assert stats == {
        "mean_confidence_accepted": 0.75,
        "mean_confidence_rejected": 0.3,
        "separation": 0.45,
        "auc": 1.0,
    }
    one_sided = confidence_stats([0.9], [True])
    assert one_sided["separation"] is None and one_sided["auc"] is None


def test_resume_continues_to_the_same_final_state(
    tiny_model_dir: Path, outcomes_file: Path, tmp_path: Path
) -> None:
    options = TrainSettings(
        quantize="4bit", learning_rate=1e-2, max_steps=6, save_steps=3, batch_size=4, seed=11,
    )  # fmt: skip
    preference = PreferenceSettings(eval_percent=0)
    run = dict(device="cpu", progress=False)
    straight = tmp_path / "straight"
    train_preference(str(tiny_model_dir), outcomes_file, straight, options, preference, **run)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    with pytest.raises(TrainError, match="already holds"):
        train_preference(str(tiny_model_dir), outcomes_file, resumed, options, preference, **run)
    result = train_preference(
        str(tiny_model_dir), outcomes_file, resumed, options, preference, resume=True, **run
    )
    assert result.steps == 6
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
