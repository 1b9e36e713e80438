"""Sizing: memory per worker for common review models, by ``reviewbot doctor``'s estimate.

    .venv/bin/python bench/sizing.py [--batch 8] [--context 32768]

The Qwen2.5-Coder-Instruct family at 1.5B, 7B, 14B and 32B (their published config
shapes, written out below, so no download is needed), each built on the meta device and
counted by :func:`reviewbot.doctor.probes.model_shape`, then priced by
:func:`reviewbot.doctor.estimate.memory_need` in 4-bit NF4 and in bf16: the weights,
the KV cache of one sequence at the context, and the total for the batch.
"""

from __future__ import annotations

import argparse

from transformers import Qwen2Config

from reviewbot.doctor.estimate import GB, memory_need
from reviewbot.doctor.probes import model_shape
from reviewbot.settings.defaults import GenerationSettings

#: name → (hidden, intermediate, layers, attention heads, KV heads, vocab, tied embeddings)
QWEN25_CODER: dict[str, tuple[int, int, int, int, int, int, bool]] = {
    "Qwen2.5-Coder-1.5B-Instruct": (1536, 8960, 28, 12, 2, 151936, True),
    "Qwen2.5-Coder-7B-Instruct": (3584, 18944, 28, 28, 4, 152064, False),
    "Qwen2.5-Coder-14B-Instruct": (5120, 13824, 48, 40, 8, 152064, False),
    "Qwen2.5-Coder-32B-Instruct": (5120, 27648, 64, 40, 8, 152064, False),
}


def config(shape: tuple[int, int, int, int, int, int, bool], context: int) -> Qwen2Config:
    hidden, inter, layers, heads, kv, vocab, tied = shape
    return Qwen2Config(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=context,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--batch", type=int, default=GenerationSettings().batch_size)
    p.add_argument("--context", type=int, default=32768)
    args = p.parse_args()
    head = (
        f"| model | parameters | 4-bit weights | bf16 weights | KV cache, 1 × {args.context} "
        f"| 4-bit, batch {args.batch} | bf16, batch {args.batch} |"
    )
    print(head)
    print("| --- " * 7 + "|")
    for name, shape in QWEN25_CODER.items():
        s = model_shape(config(shape, args.context), args.context)
        nf4 = memory_need(s, True, 2, args.batch)
        bf16 = memory_need(s, False, 2, args.batch)
        one = memory_need(s, True, 2, 1).kv_cache
        print(
            f"| {name} | {s.parameters / 1e9:.2f} B | {nf4.weights / GB:.1f} GB "
            f"| {bf16.weights / GB:.1f} GB | {one / GB:.2f} GB | {nf4.total / GB:.1f} GB "
            f"| {bf16.total / GB:.1f} GB |"
        )


if __name__ == "__main__":
    main()
