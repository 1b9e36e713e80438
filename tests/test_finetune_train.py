"""finetune train / merge on the tiny model: masking, packing, learning, resume, merging."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune.encode import IGNORE_INDEX, encode_example, prompt_ids
from finetune.examples import Example, write_examples
from finetune.loss import heldout_loss, response_loss
from finetune.merge import MergeError, merge
from finetune.train import Collator, TrainError, data_hash, pack, split_examples, train
from reviewbot.cli import main
from reviewbot.model.adapters import make_renderer
from reviewbot.model.loading import load_model
from reviewbot.model.serving import load_engine
from reviewbot.review.prompts import Renderer, template_fingerprint
from reviewbot.settings.defaults import ADAPTER_METADATA, LOSS_LOG, TrainSettings

CODES = (
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n",
    "try:\n    value = int(text)\nexcept ValueError:\n    value = 0\n",
    "SELECT id, name FROM users WHERE active = 1;\n",
)
CRITIQUES = (
    "Use a context manager so the file is closed.",
    "The variable name is unclear.",
    "This function does not handle the error case; raise an exception instead.",
    "Consider a more descriptive name.",
)
#: A handful of critique examples: each input has its own critique to learn.
EXAMPLES = [
    Example("critique", {"ORIGINAL": code}, critique)
    for code, critique in zip(CODES, CRITIQUES, strict=True)
]
#: Enough to hold some out: the same critiques on other inputs.
MORE = EXAMPLES + [
    Example("critique", {"ORIGINAL": f"x = {i}\nprint(x * {i})\n"}, CRITIQUES[i % 4])
    for i in range(4)
]


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
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "examples.jsonl"
    write_examples(EXAMPLES, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, data_file: Path):
    """QLoRA on the 4-bit tiny model, embeddings + head trained too, through the CLI."""
    out = tmp_path_factory.mktemp("trained") / "adapter"
    code = cli(
        "finetune", "train", "--base", tiny_model_dir, "--data", data_file, "--output", out,
        "--quantize", "4bit", "--train-embeddings", "--lr", "1e-2", "--max-steps", "60",
        "--batch-size", "4", "--eval-fraction", "0", "--logging-steps", "20",
        "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert code == 0
    return out


# --------------------------------------------------------------------------- masking


def test_labels_mask_exactly_the_prompt_as_the_engine_encodes_it(tiny_model_dir: Path) -> None:
    engine = load_engine(str(tiny_model_dir), quantize="none", device="cpu")
    ex = EXAMPLES[2]
    encoded = encode_example(engine.tokenizer, engine.renderer, ex, 256)
    prompt = ex.prompt(engine.renderer)
    served, _ = engine.encode(prompt, 10**6)
    assert prompt_ids(engine.tokenizer, prompt) == served
    n = len(served)
    assert encoded.input_ids[:n] == served
    assert encoded.labels[:n] == [IGNORE_INDEX] * n
    target = encoded.labels[n:]
    assert IGNORE_INDEX not in target and target == encoded.input_ids[n:]
    assert target[-1] == engine.tokenizer.eos_token_id
    assert engine.tokenizer.decode(target, skip_special_tokens=True) == ex.target


def test_prompt_logits_do_not_change_the_training_loss(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), "none", "cpu")
    renderer = make_renderer("alpaca", loaded.tokenizer)
    rows = [encode_example(loaded.tokenizer, renderer, ex, 256) for ex in EXAMPLES[:2]]
    batch = Collator(loaded.tokenizer.pad_token_id)(
        [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]
    )
    with torch.no_grad():
        out = loaded.model(**batch)  # the loss the Trainer optimises
    logits, labels = out.logits, batch["labels"]
    vocab = logits.shape[-1]

    def trainer_loss(values: torch.Tensor) -> float:
        return float(loaded.model.loss_function(values, labels, vocab_size=vocab))

    assert trainer_loss(logits) == pytest.approx(float(out.loss), rel=1e-6)
    total, count = response_loss(logits, labels)
    assert float(total) / count == pytest.approx(float(out.loss), rel=1e-5)
    # logits[:, t] predicts token t + 1: positions whose next label is -100 are prompt/padding.
    ignored = torch.zeros_like(labels, dtype=torch.bool)
    ignored[:, :-1] = labels[:, 1:] == IGNORE_INDEX
    noisy = logits.clone()
    noisy[ignored] += torch.randn_like(noisy[ignored]) * 50
    assert trainer_loss(noisy) == pytest.approx(trainer_loss(logits), rel=1e-6)
    scored = noisy.clone()
    scored[~ignored] += torch.randn_like(scored[~ignored]) * 50
    assert trainer_loss(scored) != pytest.approx(trainer_loss(logits), rel=1e-3)


def test_packed_rows_keep_examples_apart(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir), "none", "cpu")
    loaded.model.config.use_cache = False  # as finetune.train sets it for training
    renderer = make_renderer("alpaca", loaded.tokenizer)
    rows = [encode_example(loaded.tokenizer, renderer, ex, 256) for ex in EXAMPLES]
    packed = pack(rows, 256)
    assert len(packed) < len(rows)
    assert sum(len(p["input_ids"]) for p in packed) == sum(len(r.input_ids) for r in rows)
    assert all(len(p["input_ids"]) <= 256 for p in packed)
    collate = Collator(loaded.tokenizer.pad_token_id)
    batch = collate(packed)
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = loaded.model(**batch).logits
        total, count = response_loss(logits, batch["labels"])
        single = collate([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
        alone, alone_count = response_loss(loaded.model(**single).logits, single["labels"])
        # Every packed example sees only itself: its logits are those it has alone.
        seen = 0
        for i, row in enumerate(packed):
            starts = [t for t, p in enumerate(row["position_ids"]) if p == 0]
            for start, end in zip(starts, [*starts[1:], len(row["input_ids"])], strict=True):
                ids = torch.tensor([row["input_ids"][start:end]])
                torch.testing.assert_close(
                    logits[i, start:end], loaded.model(ids).logits[0], rtol=1e-4, atol=1e-4
                )
                seen += 1
    assert seen == len(rows)
    assert count == alone_count == sum(r.response_tokens for r in rows)
    assert float(total) == pytest.approx(float(alone), rel=1e-5)


def test_split_is_seeded_and_holds_out_a_share() -> None:
    train_a, eval_a = split_examples(MORE, 0.25, seed=7)
    train_b, eval_b = split_examples(MORE, 0.25, seed=7)
    assert (train_a, eval_a) == (train_b, eval_b)
    assert len(eval_a) == 2 and len(train_a) == 6
    assert {ex.key for ex in train_a}.isdisjoint(ex.key for ex in eval_a)
    assert split_examples(MORE, 0.25, seed=8)[1] != eval_a
    assert split_examples(MORE[:1], 0.5, seed=7) == (MORE[:1], [])
    assert split_examples(MORE, 0.0, seed=7) == (MORE, [])
    assert data_hash(MORE) == data_hash(list(MORE)) != data_hash(MORE[::-1])


# --------------------------------------------------------------------------- learning


def test_trained_adapter_reproduces_the_trained_critiques(
    trained: Path, tiny_model_dir: Path
) -> None:
    adapted = load_engine(str(tiny_model_dir), adapter=str(trained), quantize="4bit", device="cpu")
    base = load_engine(str(tiny_model_dir), quantize="4bit", device="cpu")
    assert adapted.quantized and adapted.prompt_format == "alpaca"
    prompts = [ex.prompt(adapted.renderer) for ex in EXAMPLES]
    learned = adapted.generate(prompts, max_new_tokens=40)
    assert learned == list(CRITIQUES)  # exact, and it stops: the EOS was learned too
    untrained = base.generate(prompts, max_new_tokens=40)
    assert all(u != c for u, c in zip(untrained, CRITIQUES, strict=True))


def test_adapter_dir_is_peft_with_reviewbot_metadata(trained: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), trained)
    assert set(model.peft_config["default"].modules_to_save) >= {"embed_tokens", "lm_head"}
    meta = json.loads((trained / ADAPTER_METADATA).read_text())
    assert meta["base_model"] == str(tiny_model_dir)
    assert meta["base"]["hidden_size"] == 64 and meta["base"]["num_hidden_layers"] == 2
    assert meta["base"]["architectures"] == ["LlamaForCausalLM"]
    assert len(meta["base"]["fingerprint"]) == 16
    assert meta["base_quantized"] is True
    assert meta["prompt_format"] == "alpaca"
    assert meta["template_fingerprint"] == template_fingerprint()
    assert meta["data"]["hash"] == data_hash(EXAMPLES) and meta["data"]["train_examples"] == 4
    assert meta["steps"] == 60 and meta["training"]["lora_r"] == 8
    metrics = meta["metrics"]
    assert metrics["tokens_per_second"] > 0 and metrics["train_tokens"] > 0
    assert metrics["peak_memory_bytes"] > 10**6 and metrics["peak_memory_kind"] == "rss"
    log = [json.loads(line) for line in (trained / LOSS_LOG).read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) >= 3 and losses[-1] < losses[0] / 3


def test_heldout_loss_falls_and_is_recorded(tmp_path: Path, tiny_model_dir: Path) -> None:
    options = TrainSettings(
        quantize="none", max_steps=12, batch_size=2, learning_rate=5e-3, eval_fraction=0.25,
        seed=3, logging_steps=4, packing=True,
    )  # fmt: skip
    result = train(str(tiny_model_dir), MORE, tmp_path / "a", options, device="cpu", progress=False)
    assert result.metadata["data"]["eval_examples"] == 2
    assert result.metrics["eval_loss"] < result.metrics["base_eval_loss"]
    # The base's held-out loss, computed independently of the trainer:
    base = load_model(str(tiny_model_dir), "none", "cpu")
    _, held = split_examples(MORE, 0.25, seed=3)
    renderer = Renderer("alpaca")
    direct = heldout_loss(base.model, base.tokenizer, renderer, held, 256, 1)
    assert direct == pytest.approx(result.metrics["base_eval_loss"], rel=1e-4)
    final = json.loads((tmp_path / "a" / LOSS_LOG).read_text().splitlines()[-1])
    assert final["final"] and final["eval_loss"] == result.metrics["eval_loss"]


def test_resume_continues_to_the_same_final_state(tmp_path: Path, tiny_model_dir: Path) -> None:
    options = TrainSettings(
        quantize="4bit", max_steps=6, save_steps=3, batch_size=2, learning_rate=3e-3,
        eval_fraction=0.25, seed=11, logging_steps=1,
    )  # fmt: skip
    straight = tmp_path / "straight"
    train(str(tiny_model_dir), MORE, straight, options, device="cpu", progress=False)
    assert (straight / "checkpoint-3").is_dir() and (straight / "checkpoint-6").is_dir()
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-3", resumed / "checkpoint-3")
    with pytest.raises(TrainError, match="already holds"):
        train(str(tiny_model_dir), MORE, resumed, options, device="cpu", progress=False)
    result = train(
        str(tiny_model_dir), MORE, resumed, options, resume=True, device="cpu", progress=False
    )
    assert result.steps == 6
    state = json.loads((resumed / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    first = load_file(straight / "checkpoint-3" / "adapter_model.safetensors")
    assert any(not torch.equal(first[k], a[k]) for k in a)  # steps 4-6 did change the weights
    straight_log = json.loads((straight / "checkpoint-6" / "trainer_state.json").read_text())
    expected = {r["step"]: r["loss"] for r in straight_log["log_history"] if "loss" in r}
    got = {r["step"]: r["loss"] for r in state["log_history"] if "loss" in r}
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4, 5, 6]
    assert [got[s] for s in sorted(got)] == pytest.approx([expected[s] for s in sorted(got)])


# --------------------------------------------------------------------------- merge


def test_merged_model_generates_like_base_plus_adapter(
    trained: Path, tiny_chat_model_dir: Path, tmp_path: Path
) -> None:
    # Merged into the chat-template copy of the base: the recorded alpaca format must win.
    out = tmp_path / "merged"
    assert cli("finetune", "merge", "--adapter", trained, "--output", out,
               "--base", tiny_chat_model_dir, "--device", "cpu") == 0  # fmt: skip
    merged = load_engine(str(out), quantize="none", device="cpu")
    adapted = load_engine(
        str(tiny_chat_model_dir), adapter=str(trained), quantize="none", device="cpu"
    )
    assert merged.adapter is None and merged.prompt_format == adapted.prompt_format == "alpaca"
    prompts = [ex.prompt(merged.renderer) for ex in EXAMPLES] + [
        merged.renderer.task("critique", ORIGINAL="for i in range(3):\n    print(i)\n")
    ]
    assert merged.generate(prompts, max_new_tokens=24) == adapted.generate(
        prompts, max_new_tokens=24
    )
    ids = torch.tensor([merged.encode(prompts[-1], 10**6)[0]])
    with torch.no_grad():
        torch.testing.assert_close(
            merged.model(ids).logits, adapted.model(ids).logits, rtol=1e-4, atol=1e-4
        )
    note = json.loads((out / ADAPTER_METADATA).read_text())
    assert note["merged_from"] == str(trained.resolve()) and note["prompt_format"] == "alpaca"


def test_merging_into_a_4bit_base_is_refused(
    trained: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("finetune", "merge", "--adapter", trained, "--output", tmp_path / "m",
               "--quantize", "4bit") == 2  # fmt: skip
    assert "merging into a 4-bit base is not supported" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    # A base checkpoint saved in 4-bit is refused too.
    quantized = tmp_path / "tiny-4bit"
    loaded = load_model(str(tiny_model_dir), "4bit", "cpu")
    loaded.model.save_pretrained(quantized)
    loaded.tokenizer.save_pretrained(quantized)
    with pytest.raises(MergeError, match="quantized checkpoint"):
        merge(trained, tmp_path / "m2", base=str(quantized), device="cpu")


# --------------------------------------------------------------------------- CLI errors


def test_bad_input_is_a_clear_error_with_exit_code_2(
    tmp_path: Path,
    tiny_model_dir: Path,
    data_file: Path,
    trained: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    base = ("finetune", "train", "--base", tiny_model_dir, "--output", out, "--device", "cpu")
    cases = [
        ((*base, "--data", tmp_path / "missing.jsonl"), "no such file"),
        ((*base, "--data", empty), "no records"),
        ((*base, "--data", data_file, "--rank", "0"), "rank must be at least 1"),
        ((*base, "--data", data_file, "--eval-fraction", "1.5"), "eval fraction"),
        ((*base, "--data", data_file, "--resume"), "nothing to resume"),
        ((*base, "--data", data_file, "--prompt-format", "chat"), "needs a tokenizer with a chat"),
        ((*base[:2], "--base", tmp_path / "nope", "--data", data_file, "--output", out), "exist"),
        ((*base[:4], "--data", data_file, "--output", trained), "already holds an adapter"),
        (("finetune", "merge", "--adapter", tmp_path, "--output", out), "not a PEFT adapter"),
    ]
    for args, message in cases:
        assert cli(*args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert not out.exists()
