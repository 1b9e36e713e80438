"""The model engine: load a causal LM (4-bit NF4 or full precision, + LoRA) and generate.

This is the only module of the review core that touches a model. ``load_engine``
resolves the model (the embedded demo model, a Hugging Face hub id or a local
directory), picks quantisation, device and prompt format; ``Engine.generate``
turns prompts into completions with batched greedy decoding. ``SharedBase`` keeps
one base model in memory for several LoRA adapters (workers switch per repository);
an adapter trained on another base is refused, and its recorded prompt format used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
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
from reviewbot.prompts import FORMATS, Renderer, template_fingerprint

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
    return _read_metadata(Path(adapter).expanduser())


def _read_metadata(directory: Path) -> dict[str, Any]:
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
    model: str | None = None, quantize: Quantize = "auto", device: str | None = None
) -> LoadedModel:
    """Resolve and load a base model + tokenizer (demo model, hub id or local directory)."""
    name = model or DEMO_MODEL
    path = _resolve_model(model)
    config = _load_config(path)
    target = _resolve_device(device)
    four_bit = _wants_4bit(quantize, target, config)
    log.info(
        "loading model %s on %s (%s)", name, target, "4-bit NF4" if four_bit else "full precision"
    )
    tokenizer = _load_tokenizer(path)
    loaded = _load_model(path, config, target, four_bit)
    loaded.eval()
    quantized = four_bit or getattr(config, "quantization_config", None) is not None
    meta = _read_metadata(Path(path)) if Path(path).is_dir() else {}
    return LoadedModel(loaded, tokenizer, config, name, path, target, quantized, meta)


# --------------------------------------------------------------------------- adapters

#: Config fields that identify a base model's shape (recorded by finetune/, compared here).
BASE_SIGNATURE_KEYS: tuple[str, ...] = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
)


def base_signature(config: Any) -> dict[str, Any]:
    """Architecture + shape of a model config, and a ``fingerprint`` hash of them.

    Stable across transformers versions and across copies of one model (hub id,
    local directory, the converted demo model): only what the weights' shapes
    depend on is recorded.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    signature: dict[str, Any] = {
        "architectures": list(getattr(config, "architectures", None) or [])
    }
    for key in BASE_SIGNATURE_KEYS:
        value = getattr(text, key, None)
        if value is None:
            value = getattr(config, key, None)
        signature[key] = value
    digest = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()
    return {**signature, "fingerprint": digest[:16]}


def _describe_base(signature: dict[str, Any]) -> str:
    arch = ",".join(signature.get("architectures") or []) or signature.get("model_type") or "?"
    return (
        f"{arch}, hidden {signature.get('hidden_size')}, {signature.get('num_hidden_layers')} "
        f"layers, vocab {signature.get('vocab_size')}"
    )


def _local_config(name: str) -> Any | None:
    """The config of a model named in adapter metadata, if it is available without a download."""
    from transformers import AutoConfig

    try:
        if name == DEMO_MODEL or Path(name).expanduser().is_dir():
            return _load_config(_resolve_model(name))
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        return None


def _peft_base_name(adapter: str) -> str | None:
    path = Path(adapter).expanduser() / "adapter_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def check_adapter_base(adapter: str, meta: dict[str, Any], base: LoadedModel) -> None:
    """Refuse (ModelLoadError) an adapter trained on another base model than ``base``.

    The adapter's ``reviewbot.json`` records the base's signature (finetune/ writes
    it); without one, the recorded base name is compared as a name and, when it
    names a model available locally, by its config.
    """
    actual = base_signature(base.config)
    recorded = meta.get("base_model") or _peft_base_name(adapter)
    trained_on = recorded or "an unrecorded base model"
    expected = meta.get("base")
    if isinstance(expected, dict) and expected.get("fingerprint"):
        if expected["fingerprint"] == actual["fingerprint"]:
            return
        differs = [
            k for k in ("architectures", *BASE_SIGNATURE_KEYS) if expected.get(k) != actual.get(k)
        ]
        raise ModelLoadError(
            f"adapter {adapter} was trained on {trained_on} ({_describe_base(expected)}) and does "
            f"not fit {base.name} ({_describe_base(actual)}): "
            f"{', '.join(differs) or 'base fingerprint'} differ"
        )
    if not recorded or recorded in (base.name, base.path):
        return
    other = _local_config(recorded)
    if other is None:
        raise ModelLoadError(
            f"adapter {adapter} was trained on {recorded}, not on {base.name}, and records no base "
            f"signature to compare them; load it with --model {recorded}"
        )
    signature = base_signature(other)
    if signature["fingerprint"] != actual["fingerprint"]:
        raise ModelLoadError(
            f"adapter {adapter} was trained on {recorded} ({_describe_base(signature)}) and does "
            f"not fit {base.name} ({_describe_base(actual)})"
        )


def choose_prompt_format(
    prompt_format: str | None,
    adapter_meta: dict[str, Any],
    tokenizer: Any,
    model_meta: dict[str, Any] | None = None,
    fallback: str | None = None,
) -> str:
    """The prompt format: recorded (adapter, else merged model) → explicit → fallback → default.

    A format recorded by training is binding: an explicit different one is an
    error, since the adapter only learned its own. Without a record the explicit
    choice, then ``fallback`` (a server default), then ``chat`` when the
    tokenizer has a chat template, else ``alpaca``.
    """
    for meta, what in ((adapter_meta, "adapter"), (model_meta or {}, "merged model")):
        recorded = meta.get("prompt_format")
        if not recorded:
            continue
        if recorded not in FORMATS:
            raise ModelLoadError(
                f"the {what}'s metadata names an unknown prompt format {recorded!r} "
                f"(known: {', '.join(FORMATS)})"
            )
        if prompt_format and prompt_format != recorded:
            raise ModelLoadError(
                f"the {what} was trained with the {recorded!r} prompt format, not "
                f"{prompt_format!r}: leave the prompt format unset to use the recorded one"
            )
        return str(recorded)
    if prompt_format:
        return prompt_format
    if fallback:
        return fallback
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


def _warn_on_template_change(adapter: str, meta: dict[str, Any]) -> None:
    recorded = meta.get("template_fingerprint")
    if recorded and recorded != template_fingerprint():
        log.warning(
            "adapter %s was trained on other prompt templates (%s, now %s): its prompts differ",
            adapter,
            recorded,
            template_fingerprint(),
        )


class SharedBase:
    """One base model in memory serving any number of LoRA adapters.

    Each adapter is loaded once (peft ``load_adapter``) under its own name and gets
    its own :class:`Engine` with its own renderer (the adapter's recorded prompt
    format); ``Engine.generate`` activates its adapter (``set_adapter``), or
    disables all adapters for the base alone, under one lock shared by all engines.
    """

    def __init__(
        self,
        base: LoadedModel,
        settings: GenerationSettings = GenerationSettings(),
        default_format: str | None = None,
    ) -> None:
        self.base = base
        self.settings = settings
        self.default_format = default_format
        self.lock = threading.RLock()
        self.peft: Any = None
        self._names: dict[str, str] = {}
        self._engines: dict[tuple[str | None, str | None], Engine] = {}

    @property
    def adapters(self) -> dict[str, str]:
        """Loaded adapters: directory → peft adapter name."""
        return dict(self._names)

    def engine(self, adapter: str | None = None, prompt_format: str | None = None) -> Engine:
        """The engine for ``adapter`` (a PEFT directory; None: the base alone), made once."""
        path = _resolve_adapter(adapter) if adapter else None
        with self.lock:
            key = (path, prompt_format)
            if key not in self._engines:
                self._engines[key] = self._make_engine(path, prompt_format)
            return self._engines[key]

    def _make_engine(self, path: str | None, prompt_format: str | None) -> Engine:
        base = self.base
        meta = adapter_metadata(path) if path else {}
        if path:
            check_adapter_base(path, meta, base)
            _warn_on_template_change(path, meta)
        fmt = choose_prompt_format(
            prompt_format, meta, base.tokenizer, base.meta, fallback=self.default_format
        )
        renderer = make_renderer(fmt, base.tokenizer)
        name = self._load_adapter(path) if path else None
        return Engine(
            self.peft if name else base.model,
            base.tokenizer,
            renderer,
            model_name=base.name,
            model_path=base.path,
            device=str(base.device),
            quantized=base.quantized,
            settings=self.settings,
            adapter=path,
            adapter_meta=meta,
            lock=self.lock,
            select=partial(self._using, name),
        )

    def _load_adapter(self, path: str) -> str:
        if path in self._names:
            return self._names[path]
        from peft import PeftModel

        name = f"adapter{len(self._names)}"
        log.info("loading LoRA adapter %s", path)
        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base.model, path, adapter_name=name)
            else:
                self.peft.load_adapter(path, adapter_name=name)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise ModelLoadError(f"cannot load adapter {path}: {e}") from e
        self.peft.eval()
        self._names[path] = name
        return name

    @contextmanager
    def _using(self, name: str | None) -> Iterator[None]:
        """Activate adapter ``name`` (None: disable every adapter) for one generate call."""
        if self.peft is None:
            yield
        elif name is None:
            with self.peft.disable_adapter():
                yield
        else:
            if self.peft.active_adapter != name:
                self.peft.set_adapter(name, inference_mode=True)
            yield


def load_engine(
    model: str | None = None,
    adapter: str | None = None,
    quantize: Quantize = "auto",
    prompt_format: str | None = None,
    settings: GenerationSettings = GenerationSettings(),
    device: str | None = None,
) -> Engine:
    """Load a model (``None``/``"smollm2"``: the embedded demo model) ready to generate.

    An adapter trained on another base is refused; its recorded prompt format is used.
    """
    started = time.perf_counter()
    if adapter:
        _resolve_adapter(adapter)  # fail before loading the model
    shared = SharedBase(load_model(model, quantize, device), settings)
    engine = shared.engine(adapter, prompt_format)
    log.info(
        "model ready in %.1fs: %.0f MB, context %d tokens, prompt format %s",
        time.perf_counter() - started,
        engine.footprint_bytes / 1e6,
        engine.context_length,
        engine.prompt_format,
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
        lock: threading.RLock | None = None,
        select: Callable[[], AbstractContextManager[None]] | None = None,
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
        # Engines sharing one base model (SharedBase) share its lock; ``select``
        # activates this engine's adapter for the duration of one generate call.
        self._lock = lock or threading.RLock()
        self._select = select or nullcontext

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
        with self._lock, self._select(), bar, torch.inference_mode():
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
