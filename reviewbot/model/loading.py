"""Load a base model and its tokenizer: the demo model, a hub id or a local directory.

``load_model`` resolves the model (the embedded demo model is converted once,
:mod:`reviewbot.model.demo`), picks the device and, by the quantisation policy
(:mod:`reviewbot.model.quantization`), 4-bit NF4 or full precision.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reviewbot.model.quantization import (
    bnb_config,
    compute_dtype,
    count_4bit_layers,
    full_dtype,
    wants_4bit,
)
from reviewbot.settings.defaults import ADAPTER_METADATA, DEFAULT_QUANTIZE, DEMO_MODEL, Quantize

log = logging.getLogger(__name__)


class ModelLoadError(OSError):
    """A model or adapter could not be found or loaded."""


def looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path (hub ids are ``org/name``)."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def resolve_model(model: str | None) -> str:
    """A local directory or hub id for ``from_pretrained``; the demo model is converted."""
    if model is None or model == DEMO_MODEL:
        from reviewbot.model.demo import DemoModelError, demo_model_dir

        try:
            return str(demo_model_dir())
        except DemoModelError as e:
            raise ModelLoadError(str(e)) from e
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{model} is not a Hugging Face model directory (no config.json)")
        return str(path)
    if looks_like_path(model):
        raise ModelLoadError(f"model directory {model} does not exist")
    return model


def read_metadata(directory: Path) -> dict[str, Any]:
    """``directory/reviewbot.json`` as a dict, or ``{}`` when there is none."""
    path = directory / ADAPTER_METADATA
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read adapter metadata {path}: {e}") from e
    if not isinstance(meta, dict):
        raise ModelLoadError(f"adapter metadata {path} is not a JSON object")
    return meta


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def load_config(path: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {path}: {e}") from e


def _load_model(path: str, config: Any, device: torch.device, four_bit: bool) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"device_map": {"": str(device)}}
    if getattr(config, "quantization_config", None) is not None:
        log.info("%s is already quantized; loading it as it is", path)
    elif four_bit:
        kwargs["quantization_config"] = bnb_config(device)
        kwargs["dtype"] = compute_dtype(device)
    else:
        kwargs["dtype"] = full_dtype(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {path}: {e}") from e
    if four_bit and count_4bit_layers(model) == 0:
        raise ModelLoadError(f"{path} was asked for in 4-bit but has no bitsandbytes 4-bit layers")
    return model


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load the tokenizer of {path}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass
class LoadedModel:
    """A base model loaded through the engine's code path, before any adapter."""

    model: Any
    tokenizer: Any
    config: Any
    name: str
    """The model as given (``smollm2`` for the demo model)."""
    path: str
    """The directory or hub id the weights came from."""
    device: torch.device
    quantized: bool
    meta: dict[str, Any]
    """The model directory's ``reviewbot.json`` (a merged model records its format), or {}."""


def load_model(
    model: str | None = None, quantize: Quantize = DEFAULT_QUANTIZE, device: str | None = None
) -> LoadedModel:
    """Resolve and load a base model + tokenizer (demo model, hub id or local directory)."""
    name = model or DEMO_MODEL
    path = resolve_model(model)
    config = load_config(path)
    target = resolve_device(device)
    four_bit = wants_4bit(quantize, target, config)
    log.info(
        "loading model %s on %s (%s)", name, target, "4-bit NF4" if four_bit else "full precision"
    )
    tokenizer = load_tokenizer(path)
    loaded = _load_model(path, config, target, four_bit)
    loaded.eval()
    quantized = four_bit or getattr(config, "quantization_config", None) is not None
    meta = read_metadata(Path(path)) if Path(path).is_dir() else {}
    return LoadedModel(loaded, tokenizer, config, name, path, target, quantized, meta)
