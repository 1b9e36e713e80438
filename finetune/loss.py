"""Teacher-forced loss over response tokens: the held-out measure of training.

Examples are encoded exactly as for training (:func:`finetune.encode.encode_example`:
the prompt as the engine tokenizes it, labels -100 on it), so the loss is the mean
cross-entropy per target token (target text + EOS) given the serving-time prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from finetune.encode import IGNORE_INDEX, Encoded, encode_example
from finetune.examples import Example
from reviewbot.review.prompts import Renderer


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy, token count) of next-token predictions where labels count.

    ``logits[:, t]`` predicts ``labels[:, t + 1]``; positions labelled -100
    (prompt and padding) contribute nothing.
    """
    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:].to(shifted.device)
    total = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total, int((targets != IGNORE_INDEX).sum())


def pad_right(rows: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch: input_ids (pad id), labels (-100) and attention_mask."""
    width = max(len(r.input_ids) for r in rows)
    ids = [r.input_ids + [pad_id] * (width - len(r.input_ids)) for r in rows]
    labels = [r.labels + [IGNORE_INDEX] * (width - len(r.labels)) for r in rows]
    mask = [[1] * len(r.input_ids) + [0] * (width - len(r.input_ids)) for r in rows]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def _device(model: Any) -> torch.device:
    return next(p.device for p in model.parameters())


def example_losses(
    model: Any,
    tokenizer: Any,
    renderer: Renderer,
    examples: Sequence[Example],
    max_length: int,
    batch_size: int,
) -> list[tuple[float, int]]:
    """Per example, in order: (summed cross-entropy, response-token count); no gradients.

    Examples are batched by length; the model's train/eval mode is restored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    rows = [encode_example(tokenizer, renderer, ex, max_length) for ex in examples]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _device(model)
    was_training = model.training
    model.eval()
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = pad_right([rows[i] for i in idx], pad_id)
                logits = model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                ).logits
                for j, i in enumerate(idx):
                    loss, n = response_loss(logits[j : j + 1], batch["labels"][j : j + 1])
                    out[i] = (float(loss), n)
    finally:
        model.train(was_training)
    return out


def heldout_loss(
    model: Any,
    tokenizer: Any,
    renderer: Renderer,
    examples: Sequence[Example],
    max_length: int,
    batch_size: int,
) -> float:
    """Mean cross-entropy per response token of ``model`` over ``examples``.

    Token-weighted over all examples (a long target counts for its length).
    """
    if not examples:
        raise ValueError("heldout_loss needs at least one example")
    losses = example_losses(model, tokenizer, renderer, examples, max_length, batch_size)
    count = sum(n for _, n in losses)
    if count == 0:
        raise ValueError("no response tokens to score (max_length too small?)")
    return sum(total for total, _ in losses) / count
