"""How much memory a model needs to serve reviews (pure arithmetic).

Weights: a 4-bit NF4 load keeps every linear layer but the output head in NF4
(:data:`~reviewbot.settings.defaults.NF4_BYTES_PER_WEIGHT`) and the rest (embeddings,
norms, the head) in the compute dtype; a full-precision load keeps everything in it
(bf16 on a GPU, fp32 on a CPU). The KV cache holds keys and values of every layer for
the configured batch and the model's whole context, in the compute dtype. Activations
and the framework's own memory come on top (a few hundred MB).
"""

from __future__ import annotations

from dataclasses import dataclass

from reviewbot.settings.defaults import NF4_BYTES_PER_WEIGHT

GB = 1e9


@dataclass(frozen=True)
class ModelShape:
    """What the memory need depends on, read from a model's config and its parameters."""

    linear: int
    """Parameters in linear layers that 4-bit quantises (all but the output head)."""
    other: int
    """Every other parameter (embeddings, norms, the output head unless tied)."""
    layers: int
    kv_heads: int
    head_dim: int
    context: int

    @property
    def parameters(self) -> int:
        return self.linear + self.other


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes to serve a model one way: weights and the KV cache."""

    weights: int
    kv_cache: int
    four_bit: bool
    dtype_bytes: int
    batch: int
    context: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache

    def describe(self) -> str:
        """E.g. ``~5.4 GB: weights 4.5 GB (4-bit NF4) + KV cache 0.9 GB (batch 8 × 32768)``."""
        how = (
            "4-bit NF4"
            if self.four_bit
            else {2: "bf16", 4: "fp32"}.get(self.dtype_bytes, f"{8 * self.dtype_bytes}-bit")
        )
        return (
            f"~{self.total / GB:.1f} GB: weights {self.weights / GB:.1f} GB ({how}) + KV cache "
            f"{self.kv_cache / GB:.1f} GB (batch {self.batch} × {self.context} tokens)"
        )


def memory_need(shape: ModelShape, four_bit: bool, dtype_bytes: int, batch: int) -> MemoryNeed:
    """The memory ``shape`` needs in 4-bit or full precision (``dtype_bytes`` per value of
    the compute dtype: 2 for bf16/fp16, 4 for fp32) with ``batch`` sequences of its context."""
    if four_bit:
        weights = round(shape.linear * NF4_BYTES_PER_WEIGHT) + shape.other * dtype_bytes
    else:
        weights = shape.parameters * dtype_bytes
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * shape.context * batch * dtype_bytes
    return MemoryNeed(weights, kv, four_bit, dtype_bytes, batch, shape.context)
