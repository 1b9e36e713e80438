"""Serving trained adapters: base checks, prompt formats, several adapters on one base."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from finetune.examples import Example
from finetune.train import train
from reviewbot.model.generation import Engine
from reviewbot.model.loading import ModelLoadError
from reviewbot.model.serving import load_engine
from reviewbot.settings.defaults import ADAPTER_METADATA, TrainSettings
from reviewbot.settings.repo import RepoConfigError
from reviewbot.settings.server import Settings
from worker.runtime import ModelRuntime

NEW = 16
CODE = (
    "def load(path):\n    return json.load(open(path))\n",
    "for i in range(len(items)):\n    print(items[i])\n",
    "class Cache:\n    def get(self, key):\n        return self.data.get(key)\n",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is far faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chat_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model_dir: Path) -> Path:
    """An adapter trained (QLoRA, embeddings too) with the ``chat`` prompt format."""
    examples = [
        Example("critique", {"ORIGINAL": code}, "Use a context manager so the file is closed.")
        for code in CODE
    ]
    options = TrainSettings(
        quantize="4bit", prompt_format="chat", train_embeddings=True, max_steps=15,
        learning_rate=1e-2, batch_size=3, eval_fraction=0, logging_steps=5,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("chat-adapter")
    train(str(tiny_chat_model_dir), examples, out, options, device="cpu", progress=False)
    return out


@pytest.fixture(scope="module")
def other_base(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A model like the tiny one with one layer fewer (same tokenizer)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("other-base")
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.num_hidden_layers = 1
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def critiques(engine: Engine) -> list[str]:
    return [engine.renderer.task("critique", ORIGINAL=code) for code in CODE]


def load4(model: Path, adapter: Path | None = None, **kwargs) -> Engine:
    return load_engine(
        str(model),
        adapter=str(adapter) if adapter else None,
        quantize="4bit",
        device="cpu",
        **kwargs,
    )


def with_meta(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / ADAPTER_METADATA).read_text())
    meta.update(changes)
    (dst / ADAPTER_METADATA).write_text(json.dumps(meta))
    return dst


# --------------------------------------------------------------------------- base checks


def test_adapter_of_another_base_is_refused_naming_both(
    chat_adapter: Path,
    tiny_adapter_dir: Path,
    other_base: Path,
    tiny_chat_model_dir: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    # Recorded signature (written by finetune train): 2 layers, not 1.
    with pytest.raises(ModelLoadError, match="num_hidden_layers") as err:
        load4(other_base, chat_adapter)
    assert str(tiny_chat_model_dir) in str(err.value) and str(other_base) in str(err.value)
    assert "2 layers" in str(err.value) and "1 layers" in str(err.value)
    # No signature, but the recorded base is a local model: compared by its config.
    with pytest.raises(ModelLoadError, match="does not fit") as err:
        load4(other_base, tiny_adapter_dir)
    assert str(tiny_model_dir) in str(err.value) and str(other_base) in str(err.value)
    # No signature and a base that cannot be compared: refused, not guessed.
    unknown = with_meta(tiny_adapter_dir, tmp_path / "unknown", base_model="someorg/other-model")
    with pytest.raises(ModelLoadError, match="someorg/other-model"):
        load4(tiny_model_dir, unknown)
    # The same base under another name (a copy with a chat template) is accepted.
    assert load4(tiny_chat_model_dir, chat_adapter).adapter == str(chat_adapter)


def test_recorded_prompt_format_is_used_and_checked(
    chat_adapter: Path,
    tiny_adapter_dir: Path,
    tiny_chat_model_dir: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = load4(tiny_chat_model_dir, chat_adapter)
    assert chat.prompt_format == "chat" and chat.renderer.wrap("hi").startswith("<|user|>")
    # The tiny model without a chat template cannot render the adapter's format.
    with pytest.raises(ValueError, match="chat template"):
        load4(tiny_model_dir, chat_adapter)
    bad = with_meta(tiny_adapter_dir, tmp_path / "bad", prompt_format="vicuna")
    with pytest.raises(ModelLoadError, match="unknown prompt format 'vicuna'"):
        load4(tiny_model_dir, bad)
    old = with_meta(tiny_adapter_dir, tmp_path / "old", template_fingerprint="0123456789abcdef")
    with caplog.at_level(logging.WARNING, logger="reviewbot.model.adapters"):
        assert load4(tiny_model_dir, old).prompt_format == "alpaca"
    assert "other prompt templates" in caplog.text


# --------------------------------------------------------------------------- serving


def test_workers_serve_several_adapters_on_one_base(
    chat_adapter: Path, tiny_adapter_dir: Path, tiny_chat_model_dir: Path
) -> None:
    settings = Settings(
        model=str(tiny_chat_model_dir),
        adapters={"chatty": str(chat_adapter), "seeded": str(tiny_adapter_dir)},
        quantize="4bit",
        prompt_format="alpaca",
    )
    runtime = ModelRuntime(settings, device="cpu")
    engines = {name: runtime.engine(name) for name in ("chatty", "seeded", None)}
    # Each adapter renders its own recorded format; the base uses the server's.
    assert engines["chatty"].prompt_format == "chat"
    assert engines["seeded"].prompt_format == "alpaca"
    assert engines[None].prompt_format == "alpaca" and engines[None].adapter is None
    prompts = {name: critiques(engine) for name, engine in engines.items()}
    # Interleaved: every switch must give the same outputs as before.
    first = {name: engines[name].generate(prompts[name], NEW) for name in engines}
    again = {name: engines[name].generate(prompts[name], NEW) for name in reversed(engines)}
    assert again == first
    # Equal to one engine per adapter, each with its own base...
    assert first["chatty"] == load4(tiny_chat_model_dir, chat_adapter).generate(
        prompts["chatty"], NEW
    )
    assert first["seeded"] == load4(tiny_chat_model_dir, tiny_adapter_dir).generate(
        prompts["seeded"], NEW
    )
    assert first[None] == load4(tiny_chat_model_dir, prompt_format="alpaca").generate(
        prompts[None], NEW
    )
    # ...and different per adapter on the same prompts.
    same = critiques(engines["seeded"])
    outputs = [engines[name].generate(same, NEW) for name in ("seeded", None)]
    assert outputs[0] != outputs[1]
    assert first["chatty"] != engines[None].generate(prompts["chatty"], NEW)
    # One base in memory: loaded once, both adapters on the same peft model.
    assert runtime.base_loads == 1
    assert engines["chatty"].model is engines["seeded"].model
    assert set(runtime.shared().adapters) == {str(chat_adapter), str(tiny_adapter_dir)}
    assert runtime.engine("chatty") is engines["chatty"]
    with pytest.raises(RepoConfigError, match="adapter 'missing' is not available") as missing:
        runtime.engine("missing")
    assert missing.value.key == "adapter"
    assert runtime.base_loads == 1


def test_an_adapter_reserved_for_other_owners_is_a_config_error_naming_the_key(
    tiny_adapter_dir: Path, tiny_model_dir: Path
) -> None:
    settings = Settings.from_env(
        {
            "REVIEWBOT_MODEL": str(tiny_model_dir),
            "REVIEWBOT_QUANTIZE": "4bit",
            "REVIEWBOT_ADAPTERS": f"team@octo-org+Acme={tiny_adapter_dir},open={tiny_adapter_dir}",
        }
    )
    runtime = ModelRuntime(settings, device="cpu")
    with pytest.raises(RepoConfigError) as refused:
        runtime.engine("team", owner="mallory")
    assert refused.value.key == "adapter"
    assert "adapter 'team' is not available to mallory (available: open)" in str(refused.value)
    assert runtime.base_loads == 0  # refused before any model work
    assert runtime.engine("team", owner="acme").adapter == str(tiny_adapter_dir)
    assert runtime.engine("open", owner="mallory").adapter == str(tiny_adapter_dir)


def test_a_bad_adapter_does_not_break_the_others(chat_adapter: Path, other_base: Path) -> None:
    settings = Settings(
        model=str(other_base),
        adapters={"chatty": str(chat_adapter)},
        quantize="4bit",
    )
    runtime = ModelRuntime(settings, device="cpu")
    with pytest.raises(ModelLoadError, match="does not fit"):
        runtime.engine("chatty")
    base = runtime.engine(None)
    assert base.generate(critiques(base), NEW)[0].strip()
    assert runtime.shared().adapters == {}
