"""Examples → token ids with loss only on the response (prompt labels are -100).

The prompt is rendered by the renderer serving uses
(:func:`reviewbot.model.adapters.make_renderer`) and tokenized exactly as
:meth:`reviewbot.model.generation.Engine.encode` does at serving time
(:func:`reviewbot.model.tokens.prompt_token_ids`), and the target separately,
followed by EOS: the model learns to continue the very token sequence it will be
given when it reviews. Untrusted text becomes no special token in either: the
renderer neutralises special-token strings in the prompt's fields and in the
target (a reviewer's comment is untrusted too), so the only special tokens are
the template's own and the EOS appended here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune.examples import Example
from reviewbot.model.tokens import prompt_token_ids, truncate_middle
from reviewbot.review.prompts import Renderer

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def response_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as the engine encodes it."""
    return prompt_token_ids(tokenizer, prompt)


def encode_example(
    tokenizer: Any, renderer: Renderer, example: Example, max_length: int
) -> Encoded:
    """``example`` as (input_ids, labels), at most ``max_length`` tokens.

    The response keeps priority: a long prompt loses its middle (as at serving
    time) down to half of ``max_length``; a response longer than what remains
    is cut at its end (its EOS is then lost).
    """
    if max_length < 4:
        raise ValueError("max_length must be at least 4 tokens")
    prompt = prompt_ids(tokenizer, example.prompt(renderer))
    target_text = renderer.neutralise(example.target)
    target = list(tokenizer(target_text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        target.append(int(tokenizer.eos_token_id))
    prompt_budget = max(max_length - len(target), max_length // 2)
    prompt = truncate_middle(prompt, prompt_budget)
    target = target[: max_length - len(prompt)]
    return Encoded(prompt + target, [IGNORE_INDEX] * len(prompt) + target)
