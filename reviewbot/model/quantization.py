"""The quantisation policy: when a model is loaded in 4-bit NF4 and in which dtypes."""

from __future__ import annotations

import logging
from typing import Any

import torch

from reviewbot.settings.defaults import CPU_MEMORY_HEADROOM, QUANTIZE_CHOICES, Quantize

log = logging.getLogger(__name__)


def full_dtype(device: torch.device) -> torch.dtype:
    """Full precision: fp32 on CPU, bf16 (fp16 on old GPUs) on CUDA."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def compute_dtype(device: torch.device) -> torch.dtype:
    """NF4 compute dtype: fp32 is faster on CPU (and batch-exact), bf16 on CUDA."""
    return full_dtype(device)


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


def wants_4bit(quantize: Quantize, device: torch.device, config: Any) -> bool:
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
        bnb_4bit_compute_dtype=compute_dtype(device),
    )


def count_4bit_layers(model: torch.nn.Module) -> int:
    """How many ``bitsandbytes.nn.Linear4bit`` layers ``model`` has."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    return sum(isinstance(m, Linear4bit) for m in model.modules())
