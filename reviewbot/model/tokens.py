"""Prompt tokens and the context's budgets, shared by every engine (no torch).

The in-process engine (:mod:`reviewbot.model.generation`), the inference-server
engine (:mod:`reviewbot.model.remote`) and training (:mod:`finetune.encode`) cut
prompts by the same rules, with the model's own tokenizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from reviewbot.jobs.deadline import Deadline, current_deadline
from reviewbot.settings.defaults import GenerationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationStats:
    """What the last ``generate`` call of an engine did."""

    prompts: int = 0
    prompt_tokens: int = 0
    """Prompt tokens fed to the model (after truncation, padding excluded)."""
    generated_tokens: int = 0
    """New tokens up to and including each completion's end-of-sequence token."""
    seconds: float = 0.0
    first_output_seconds: float | None = None
    """Time until the first completion was ready."""
    truncated: int = 0
    """How many prompts were cut to fit the context."""

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0


def prompt_token_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a rendered prompt: what the engines feed the model, and what
    finetune/ trains on (:mod:`finetune.encode`), so all see the same ids.

    The tokenizer's special tokens are read in ``prompt``: they are the
    template's own (chat roles, BOS), since the renderer made by
    :func:`reviewbot.model.adapters.make_renderer` neutralised every special-token
    string in the untrusted text it wrapped. The tokenizer adds its own special
    tokens (BOS) unless the prompt already starts with BOS.
    """
    bos = tokenizer.bos_token
    special = not (bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=special)["input_ids"])


def truncate_middle(ids: list[int], budget: int) -> list[int]:
    """Keep the head and the tail of ``ids`` (at most ``budget`` tokens), drop the middle."""
    if len(ids) <= budget:
        return ids
    head = budget // 2
    tail = budget - head
    return ids[:head] + (ids[-tail:] if tail else [])


def context_budgets(
    context: int, max_new_tokens: int, settings: GenerationSettings
) -> tuple[int, int]:
    """(prompt token budget, new tokens) that together fit a ``context``-token window."""
    floor = min(settings.min_prompt_tokens, context - 1)
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


def fit_prompt(tokenizer: Any, prompt: str, budget: int) -> tuple[list[int], bool]:
    """Token ids of ``prompt`` cut to ``budget`` (middle dropped); and whether it was cut."""
    ids = prompt_token_ids(tokenizer, prompt)
    if len(ids) <= budget:
        return ids, False
    log.warning(
        "prompt of %d tokens exceeds the %d-token budget: dropping %d tokens from its middle",
        len(ids),
        budget,
        len(ids) - budget,
    )
    return truncate_middle(ids, budget), True


def config_context(config: Any, fallback: int) -> int:
    """A model config's context (``max_position_embeddings``), or ``fallback``."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(getattr(text, "max_position_embeddings", None) or fallback)


def begin_generation(
    settings: GenerationSettings, max_new_tokens: int | None
) -> tuple[Deadline | None, int]:
    """What every engine's ``generate`` starts with: the job's deadline (checked: past it,
    DeadlineExceeded) and the new tokens asked for (the settings' when None; ValueError
    below 1)."""
    deadline = current_deadline()
    if deadline is not None:
        deadline.check("generation")
    requested = settings.max_new_tokens if max_new_tokens is None else max_new_tokens
    if requested < 1:
        raise ValueError(f"max_new_tokens must be positive, not {requested}")
    return deadline, requested


def completion_room(context: int, settings: GenerationSettings) -> int:
    """The most completion tokens ``score`` keeps: what the context leaves after
    ``settings.min_prompt_tokens``."""
    return max(1, context - min(settings.min_prompt_tokens, context - 1))


def begin_scoring(prompts: list[str], completions: list[str]) -> Deadline | None:
    """What every engine's ``score`` starts with: the lists checked (ValueError when their
    lengths differ) and the job's deadline (checked: past it, DeadlineExceeded)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    deadline = current_deadline()
    if deadline is not None:
        deadline.check("scoring")
    return deadline


def completion_token_ids(tokenizer: Any, renderer: Any, completion: str) -> list[int]:
    """Token ids of a completion to score: no special token added, and none formed by
    special-token strings in the text (it is the model's or a user's text)."""
    text = renderer.neutralise(completion)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
