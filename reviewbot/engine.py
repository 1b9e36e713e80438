"""The model engine: load a causal LM (4-bit NF4 or full precision, + LoRA) and generate.

This is the only module of the review core that touches a model. ``load_engine``
resolves the model (the embedded demo model, a Hugging Face hub id or a local
directory), picks quantisation, device and prompt format; ``Engine.generate``
turns prompts into completions with batched greedy decoding.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from reviewbot.config import (
    ADAPTER_METADATA,
    CPU_MEMORY_HEADROOM,
    DEMO_MODEL,
    GenerationSettings,
    Quantize,
)
from reviewbot.prompts import Renderer

log = logging.getLogger(__name__)

QUANTIZE_CHOICES: tuple[str, ...] = ("auto", "4bit", "none")


class ModelLoadError(OSError):
    """A model or adapter could not be found or loaded."""


@dataclass(frozen=True)
class GenerationStats:
    """What the last ``Engine.generate`` call did."""

    prompts: int = 0
    prompt_tokens: int = 0
    """Prompt tokens fed to the model (after truncation, padding excluded)."""
    generated_tokens: int = 0
    """New tokens up to and including each completion's end-of-sequence token."""
    seconds: float = 0.0
    first_output_seconds: float | None = None
    """Time until the first batch's completions were ready."""
    truncated: int = 0
    """How many prompts were cut to fit the context."""

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- resolving


def _looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path (hub ids are ``org/name``)."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _resolve_model(model: str | None) -> str:
    """A local directory or hub id for ``from_pretrained``; the demo model is converted."""
    if model is None or model == DEMO_MODEL:
        from reviewbot.demo_model import DemoModelError, demo_model_dir

        try:
            return str(demo_model_dir())
        except DemoModelError as e:
            raise ModelLoadError(str(e)) from e
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{model} is not a Hugging Face model directory (no config.json)")
        return str(path)
    if _looks_like_path(model):
        raise ModelLoadError(f"model directory {model} does not exist")
    return model


def _resolve_adapter(adapter: str) -> str:
    path = Path(adapter).expanduser()
    if path.exists():
        if not (path / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"{adapter} is not a PEFT adapter directory (no adapter_config.json)"
            )
        return str(path)
    if _looks_like_path(adapter):
        raise ModelLoadError(f"adapter directory {adapter} does not exist")
    return adapter


def adapter_metadata(adapter: str) -> dict[str, Any]:
    """The adapter's ``reviewbot.json`` (base model, prompt format, ...), or ``{}``."""
    path = Path(adapter).expanduser() / ADAPTER_METADATA
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read adapter metadata {path}: {e}") from e
    if not isinstance(meta, dict):
        raise ModelLoadError(f"adapter metadata {path} is not a JSON object")
    return meta


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


# --------------------------------------------------------------------------- quantisation


def _full_dtype(device: torch.device) -> torch.dtype:
    """Full precision: fp32 on CPU, bf16 (fp16 on old GPUs) on CUDA."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _compute_dtype(device: torch.device) -> torch.dtype:
    """NF4 compute dtype: fp32 is faster on CPU (and batch-exact), bf16 on CUDA."""
    return _full_dtype(device)


def _available_memory() -> int | None:
    """Available RAM in bytes (psutil, else /proc/meminfo), ``None`` if unknown."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def parameter_count(config: Any) -> int:
    """Number of parameters of a model built from ``config``, without allocating weights."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in empty.parameters())


def _fits_in_memory(config: Any) -> bool:
    """Whether the fp32 weights (with headroom) fit in the available RAM."""
    available = _available_memory()
    if available is None:
        return True
    needed = parameter_count(config) * 4 * CPU_MEMORY_HEADROOM
    log.info("full precision needs ~%.2f GB, %.2f GB available", needed / 1e9, available / 1e9)
    return needed <= available


def _wants_4bit(quantize: Quantize, device: torch.device, config: Any) -> bool:
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not {quantize!r}")
    if quantize != "auto":
        return quantize == "4bit"
    if device.type == "cuda":
        return True
    fits = _fits_in_memory(config)
    if not fits:
        log.warning("the model does not fit in memory in full precision: loading it in 4-bit")
    return not fits


def bnb_config(device: torch.device) -> Any:
    """The 4-bit NF4 (double-quantized) bitsandbytes configuration for ``device``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=_compute_dtype(device),
    )


def count_4bit_layers(model: torch.nn.Module) -> int:
    """How many ``bitsandbytes.nn.Linear4bit`` layers ``model`` has."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    return sum(isinstance(m, Linear4bit) for m in model.modules())


# --------------------------------------------------------------------------- loading


def _load_config(path: str) -> Any:
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
        kwargs["dtype"] = _compute_dtype(device)
    else:
        kwargs["dtype"] = _full_dtype(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {path}: {e}") from e
    if four_bit and count_4bit_layers(model) == 0:
        raise ModelLoadError(f"{path} was asked for in 4-bit but has no bitsandbytes 4-bit layers")
    return model


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load the tokenizer of {path}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _attach_adapter(model: Any, adapter: str) -> Any:
    from peft import PeftModel

    log.info("loading LoRA adapter %s", adapter)
    try:
        return PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load adapter {adapter}: {e}") from e


def choose_prompt_format(
    prompt_format: str | None, adapter_meta: dict[str, Any], tokenizer: Any
) -> str:
    """Explicit choice → adapter metadata → ``chat`` with a chat template → ``alpaca``."""
    if prompt_format:
        return prompt_format
    if adapter_meta.get("prompt_format"):
        return str(adapter_meta["prompt_format"])
    if getattr(tokenizer, "chat_template", None):
        return "chat"
    return "alpaca"


def make_renderer(fmt: str, tokenizer: Any) -> Renderer:
    """A ``Renderer`` for ``fmt``; ``chat`` renders through the tokenizer's template."""
    template = None
    if getattr(tokenizer, "chat_template", None):
        template = partial(
            tokenizer.apply_chat_template, tokenize=False, add_generation_prompt=True
        )
    return Renderer(fmt, template)


def load_engine(
    model: str | None = None,
    adapter: str | None = None,
    quantize: Quantize = "auto",
    prompt_format: str | None = None,
    settings: GenerationSettings = GenerationSettings(),
    device: str | None = None,
) -> Engine:
    """Load a model (``None``/``"smollm2"``: the embedded demo model) ready to generate."""
    started = time.perf_counter()
    name = model or DEMO_MODEL
    path = _resolve_model(model)
    adapter_path = _resolve_adapter(adapter) if adapter else None
    meta = adapter_metadata(adapter_path) if adapter_path else {}
    config = _load_config(path)
    target = _resolve_device(device)
    four_bit = _wants_4bit(quantize, target, config)
    log.info(
        "loading model %s on %s (%s)", name, target, "4-bit NF4" if four_bit else "full precision"
    )
    tokenizer = _load_tokenizer(path)
    fmt = choose_prompt_format(prompt_format, meta, tokenizer)
    renderer = make_renderer(fmt, tokenizer)
    loaded = _load_model(path, config, target, four_bit)
    quantized = four_bit or getattr(config, "quantization_config", None) is not None
    if adapter_path:
        base = meta.get("base_model")
        if base and base not in (name, path):
            log.warning("adapter %s was trained on %s, not on %s", adapter_path, base, name)
        loaded = _attach_adapter(loaded, adapter_path)
    loaded.eval()
    engine = Engine(
        loaded,
        tokenizer,
        renderer,
        model_name=name,
        model_path=path,
        device=str(target),
        quantized=quantized,
        settings=settings,
        adapter=adapter_path,
        adapter_meta=meta,
    )
    log.info(
        "model ready in %.1fs: %.0f MB, context %d tokens, prompt format %s",
        time.perf_counter() - started,
        engine.footprint_bytes / 1e6,
        engine.context_length,
        fmt,
    )
    return engine


# --------------------------------------------------------------------------- generation


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def truncate_middle(ids: list[int], budget: int) -> list[int]:
    """Keep the head and the tail of ``ids`` (at most ``budget`` tokens), drop the middle."""
    if len(ids) <= budget:
        return ids
    head = budget // 2
    tail = budget - head
    return ids[:head] + (ids[-tail:] if tail else [])


class Engine:
    """A loaded model + tokenizer + prompt renderer; ``generate`` is batched greedy decoding."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        renderer: Renderer,
        *,
        model_name: str,
        device: str,
        quantized: bool,
        settings: GenerationSettings = GenerationSettings(),
        adapter: str | None = None,
        adapter_meta: dict[str, Any] | None = None,
        model_path: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.renderer = renderer
        self.model_name = model_name
        # The directory or hub id the weights came from (the demo model's converted dir).
        self.model_path = model_path or model_name
        self.device = device
        self.quantized = quantized
        self.settings = settings
        self.adapter = adapter
        self.adapter_meta = adapter_meta or {}
        self.prompt_format = renderer.fmt
        self.footprint_bytes = int(model.get_memory_footprint())
        self.eos_token_ids = _eos_ids(model, tokenizer)
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.last_stats = GenerationStats()

    @property
    def context_length(self) -> int:
        """The model's context (``max_position_embeddings``) or the configured fallback."""
        config = self.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        return int(getattr(text, "max_position_embeddings", None) or self.settings.fallback_context)

    def budgets(self, max_new_tokens: int) -> tuple[int, int]:
        """(prompt token budget, new tokens) that together fit the context."""
        context = self.context_length
        floor = min(self.settings.min_prompt_tokens, context - 1)
        prompt_budget = max(context - max_new_tokens, floor)
        new_tokens = min(max_new_tokens, context - prompt_budget)
        if new_tokens < max_new_tokens:
            log.warning(
                "max_new_tokens %d does not fit the %d-token context: generating at most %d",
                max_new_tokens,
                context,
                new_tokens,
            )
        return prompt_budget, new_tokens

    def encode(self, prompt: str, budget: int) -> tuple[list[int], bool]:
        """Token ids of ``prompt`` cut to ``budget`` (middle dropped); and whether it was cut."""
        bos = self.tokenizer.bos_token
        special = not (bos and prompt.startswith(bos))
        ids = list(self.tokenizer(prompt, add_special_tokens=special)["input_ids"])
        if len(ids) <= budget:
            return ids, False
        log.warning(
            "prompt of %d tokens exceeds the %d-token budget: dropping %d tokens from its middle",
            len(ids),
            budget,
            len(ids) - budget,
        )
        return truncate_middle(ids, budget), True

    def _pad_left(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = [[self.pad_token_id] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        device = self.model.device
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    def _generation_config(self, new_tokens: int) -> Any:
        from transformers import GenerationConfig

        return GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=new_tokens,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_ids,
            bos_token_id=self.tokenizer.bos_token_id,
        )

    def _count_generated(self, new: torch.Tensor) -> int:
        """New tokens per row up to and including the first end-of-sequence token."""
        if not self.eos_token_ids or new.shape[1] == 0:
            return int(new.numel())
        eos = torch.isin(new, torch.tensor(self.eos_token_ids, device=new.device))
        first = torch.where(eos.any(dim=1), eos.int().argmax(dim=1) + 1, new.shape[1])
        return int(first.sum())

    def _run_batch(self, rows: Sequence[list[int]], config: Any) -> tuple[list[str], int]:
        ids, mask = self._pad_left(rows)
        out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        new = out[:, ids.shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts, self._count_generated(new)

    def generate(
        self, prompts: list[str], max_new_tokens: int | None = None, progress: bool = False
    ) -> list[str]:
        """Greedy completions of ``prompts`` (new text only), in input order."""
        from tqdm.auto import tqdm

        requested = self.settings.max_new_tokens if max_new_tokens is None else max_new_tokens
        if requested < 1:
            raise ValueError(f"max_new_tokens must be positive, not {requested}")
        if not prompts:
            self.last_stats = GenerationStats()
            return []
        started = time.perf_counter()
        budget, new_tokens = self.budgets(requested)
        encoded = [self.encode(p, budget) for p in prompts]
        rows = [ids for ids, _ in encoded]
        # Longest first: similar lengths share a batch (less padding), and running out
        # of memory shows at once.
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        size = max(1, self.settings.batch_size)
        config = self._generation_config(new_tokens)
        outputs = [""] * len(prompts)
        generated, first = 0, None
        torch.manual_seed(self.settings.seed)
        bar = tqdm(total=len(prompts), desc="generating", unit="prompt", disable=not progress)
        with bar, torch.inference_mode():
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                texts, count = self._run_batch([rows[i] for i in batch], config)
                for i, text in zip(batch, texts, strict=True):
                    outputs[i] = text
                generated += count
                first = first if first is not None else time.perf_counter() - started
                bar.update(len(batch))
        self.last_stats = GenerationStats(
            prompts=len(prompts),
            prompt_tokens=sum(len(r) for r in rows),
            generated_tokens=generated,
            seconds=time.perf_counter() - started,
            first_output_seconds=first,
            truncated=sum(cut for _, cut in encoded),
        )
        return outputs
