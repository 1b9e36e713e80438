"""Generation: batched greedy decoding with a loaded model, within its context.

:class:`Engine` holds a model (with its active adapter), its tokenizer and the
prompt renderer of its format; ``generate`` turns prompts into completions. Inside
a job (:func:`reviewbot.jobs.deadline.job_deadline`) generation stops at the job's
deadline, mid-batch, and raises :class:`~reviewbot.jobs.deadline.DeadlineExceeded`
instead of returning cut-off completions. ``score`` is the teacher-forced reverse:
how likely the model finds given completions of given prompts (the confidence of a
finding, :mod:`reviewbot.review.confidence`), under the same context and deadline.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from reviewbot.jobs.deadline import Deadline
from reviewbot.model.tokens import (
    GenerationStats,
    begin_generation,
    begin_scoring,
    completion_room,
    completion_token_ids,
    config_context,
    context_budgets,
    fit_prompt,
)
from reviewbot.review.prompts import Renderer
from reviewbot.settings.defaults import GenerationSettings

log = logging.getLogger(__name__)


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


class Engine:
    """A loaded model + tokenizer + prompt renderer; ``generate`` is batched greedy decoding."""

    can_score = True
    """Whether ``score`` works (an inference server may not give log-probabilities)."""

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
        self.last_score_stats = GenerationStats()
        """What the last ``score`` call did (``prompt_tokens``: prompt and completion
        tokens fed, as all of them go through the model)."""
        # Engines sharing one base model (SharedBase) share its lock; ``select``
        # activates this engine's adapter for the duration of one generate call.
        self._lock = lock or threading.RLock()
        self._select = select or nullcontext
        self._no_lookup: str | None = None
        """Why prompt lookup is off for this engine's model (None: it is not)."""

    @property
    def context_length(self) -> int:
        """The model's context (``max_position_embeddings``) or the configured fallback."""
        return config_context(self.model.config, self.settings.fallback_context)

    def budgets(self, max_new_tokens: int) -> tuple[int, int]:
        """(prompt token budget, new tokens) that together fit the context."""
        return context_budgets(self.context_length, max_new_tokens, self.settings)

    def encode(self, prompt: str, budget: int) -> tuple[list[int], bool]:
        """Token ids of ``prompt`` cut to ``budget`` (middle dropped); and whether it was cut.

        ``prompt`` is rendered by ``self.renderer``, so untrusted text in it forms
        no special token (:func:`~reviewbot.model.tokens.prompt_token_ids`).
        """
        return fit_prompt(self.tokenizer, prompt, budget)

    def _pad_left(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = [[self.pad_token_id] * (width - len(r)) + r for r in rows]
        mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
        device = self.model.device
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    def _generation_config(self, new_tokens: int, lookup: int = 0) -> Any:
        """Greedy decoding of ``new_tokens``; ``lookup`` > 0: with prompt-lookup candidates."""
        from transformers import GenerationConfig

        return GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=new_tokens,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_ids,
            bos_token_id=self.tokenizer.bos_token_id,
            prompt_lookup_num_tokens=lookup or None,
        )

    def lookup_tokens(self) -> int:
        """Prompt-lookup candidate tokens :meth:`generate_copying` uses (0: none)."""
        wanted = self.settings.prompt_lookup_tokens
        if wanted <= 0:
            return 0
        if self._no_lookup is not None:
            log.debug("prompt lookup off for %s: %s", self.model_name, self._no_lookup)
            return 0
        return wanted

    def _count_generated(self, new: torch.Tensor) -> int:
        """New tokens per row up to and including the first end-of-sequence token."""
        if not self.eos_token_ids or new.shape[1] == 0:
            return int(new.numel())
        eos = torch.isin(new, torch.tensor(self.eos_token_ids, device=new.device))
        first = torch.where(eos.any(dim=1), eos.int().argmax(dim=1) + 1, new.shape[1])
        return int(first.sum())

    def _run_batch(
        self, rows: Sequence[list[int]], config: Any, deadline: Deadline | None = None
    ) -> tuple[list[str], int]:
        ids, mask = self._pad_left(rows)
        stop = _stop_at(deadline)
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=config, stopping_criteria=stop
        )
        new = out[:, ids.shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts, self._count_generated(new)

    def _decode(
        self, rows: Sequence[list[int]], config: Any, plain: Any, deadline: Deadline | None
    ) -> tuple[list[str], int]:
        """``_run_batch`` with ``config``; with ``plain`` instead when ``config`` asks for
        prompt lookup and this model cannot do it (then never again for this engine)."""
        if config.prompt_lookup_num_tokens is None or self._no_lookup is not None:
            return self._run_batch(rows, plain, deadline)
        try:
            return self._run_batch(rows, config, deadline)
        except (ValueError, NotImplementedError) as e:  # e.g. a cache that cannot be cropped
            self._no_lookup = f"{type(e).__name__}: {e}"
            log.warning("prompt lookup failed (%s): decoding without it", self._no_lookup)
            return self._run_batch(rows, plain, deadline)

    def generate_copying(
        self, prompts: list[str], max_new_tokens: int | None = None, progress: bool = False
    ) -> list[str]:
        """:meth:`generate` for prompts whose completions mostly copy the prompt (revisions).

        With ``settings.prompt_lookup_tokens`` > 0, every prompt decoded alone uses
        prompt-lookup decoding (the same greedy output; it needs a batch of one): all of
        them, one at a time, when there are at most ``settings.prompt_lookup_max_prompts``;
        else they are batched as usual and only a batch left with one prompt uses it.
        With 0, exactly :meth:`generate`."""
        return self.generate(prompts, max_new_tokens, progress, copying=True)

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int | None = None,
        progress: bool = False,
        *,
        copying: bool = False,
    ) -> list[str]:
        """Greedy completions of ``prompts`` (new text only), in input order.

        Inside a job, the job's deadline is checked before each batch and after every
        new token; past it, :class:`~reviewbot.jobs.deadline.DeadlineExceeded`.
        ``copying``: see :meth:`generate_copying`.
        """
        from tqdm.auto import tqdm

        deadline, requested = begin_generation(self.settings, max_new_tokens)
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
        lookup = self.lookup_tokens() if copying else 0
        # prompt lookup (assisted generation) decodes one sequence at a time
        alone = lookup > 0 and len(prompts) <= self.settings.prompt_lookup_max_prompts
        size = 1 if alone else max(1, self.settings.batch_size)
        config = self._generation_config(new_tokens)
        single = self._generation_config(new_tokens, lookup) if lookup else config
        if lookup:
            log.debug(
                "prompt lookup (%d tokens) for %s of %d prompt(s)",
                lookup,
                "each" if alone else "a batch of one",
                len(prompts),
            )
        outputs = [""] * len(prompts)
        generated, first = 0, None
        torch.manual_seed(self.settings.seed)
        bar = tqdm(total=len(prompts), desc="generating", unit="prompt", disable=not progress)
        with self._lock, self._select(), bar, torch.inference_mode():
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                chosen = single if len(batch) == 1 else config
                texts, count = self._decode([rows[i] for i in batch], chosen, config, deadline)
                if deadline is not None:
                    deadline.check("generation")  # stopped by the deadline: cut off
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

    def completion_ids(self, completion: str) -> list[int]:
        """Token ids of a completion to score (see :mod:`reviewbot.model.tokens`)."""
        return completion_token_ids(self.tokenizer, self.renderer, completion)

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """Mean log-probability per token of each completion given its prompt, in order.

        Teacher-forced and batched: each distinct prompt goes through the model once
        (longest first, ``settings.batch_size`` prompts a batch, left-padded), and
        each of its completions continues from that prompt's cache, so scoring a
        critique and the "no issues" answer of the same prompt costs one prompt pass.
        Only the completions' logits are turned into log-probabilities, one row at a
        time. A completion keeps at most what the context leaves after
        ``settings.min_prompt_tokens`` (its tail is cut); the prompt is cut in the
        middle to fit, as in :meth:`generate`. Inside a job the deadline is checked
        before and after each batch. ValueError for mismatched lists or a completion
        with no tokens.
        """
        deadline = begin_scoring(prompts, completions)
        if not prompts:
            self.last_score_stats = GenerationStats()
            return []
        started = time.perf_counter()
        context = self.context_length
        room = completion_room(context, self.settings)
        # distinct (cut) prompt → the indices and tokens of its completions
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        truncated = 0
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            target = self.completion_ids(completion)[:room]
            if not target:
                raise ValueError("cannot score an empty completion")
            ids, cut = self.encode(prompt, context - len(target))
            if not ids:
                raise ValueError("cannot score a completion of an empty prompt")
            truncated += cut
            groups.setdefault(tuple(ids), []).append((i, target))
        keys = sorted(groups, key=len, reverse=True)
        size = max(1, self.settings.batch_size)
        out = [0.0] * len(prompts)
        with self._lock, self._select(), torch.inference_mode():
            for start in range(0, len(keys), size):
                batch = keys[start : start + size]
                means = self._score_batch(
                    [list(k) for k in batch], [[t for _, t in groups[k]] for k in batch]
                )
                if deadline is not None:
                    deadline.check("scoring")
                for key, row in zip(batch, means, strict=True):
                    for (i, _), mean in zip(groups[key], row, strict=True):
                        out[i] = mean
        fed = sum(len(k) + sum(len(t) for _, t in groups[k]) for k in keys)
        self.last_score_stats = GenerationStats(
            prompts=len(prompts),
            prompt_tokens=fed,
            seconds=time.perf_counter() - started,
            truncated=truncated,
        )
        return out

    def _score_batch(
        self, prompts: Sequence[list[int]], completions: Sequence[Sequence[list[int]]]
    ) -> list[list[float]]:
        """Mean log-probabilities of ``completions[b]`` (token lists) after ``prompts[b]``.

        One pass over the left-padded prompts keeps their cache and the log-probs of
        each first completion token; then, round ``r``, the ``r``-th completion of
        every prompt (right-padded; a prompt without one gets a pad token, ignored)
        continues from a copy of that cache.
        """
        ids, mask = self._pad_left(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        first = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        head = first.logits[:, -1, :].float()
        head = head - torch.logsumexp(head, dim=-1, keepdim=True)
        cache = first.cache
        lengths = mask.sum(dim=-1, keepdim=True)
        rounds = max(len(c) for c in completions)
        out: list[list[float]] = [[] for _ in prompts]
        for r in range(rounds):
            targets = [c[r] if r < len(c) else [self.pad_token_id] for c in completions]
            width = max(len(t) for t in targets)
            pad = [[self.pad_token_id] * (width - len(t)) for t in targets]
            tokens = torch.tensor([t + p for t, p in zip(targets, pad, strict=True)])
            tokens = tokens.to(ids.device)
            logp = [head[b, int(tokens[b, 0])].reshape(1) for b in range(len(targets))]
            if width > 1:
                seen = [[1] * (len(t) - 1) + [0] * (width - len(t)) for t in targets]
                step = self.model(
                    input_ids=tokens[:, :-1],
                    attention_mask=torch.cat([mask, torch.tensor(seen, device=mask.device)], 1),
                    position_ids=lengths + torch.arange(width - 1, device=ids.device),
                    cache=cache if r == rounds - 1 else copy.deepcopy(cache),
                    use_cache=True,
                )
                for b, t in enumerate(targets):
                    rows = step.logits[b, : len(t) - 1].float()
                    picked = rows.gather(-1, tokens[b, 1 : len(t), None]).squeeze(-1)
                    logp[b] = torch.cat([logp[b], picked - torch.logsumexp(rows, dim=-1)])
            for b, c in enumerate(completions):
                if r < len(c):
                    out[b].append(float(logp[b].mean()))
        return out


def _stop_at(deadline: Deadline | None) -> Any:
    """Stopping criteria that end ``model.generate`` once ``deadline`` has passed.

    The deadline's own clock decides (rather than transformers' ``max_time`` on the
    wall clock), so generation stops exactly when :meth:`Deadline.check` would fail.
    """
    if deadline is None:
        return None
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _PastDeadline(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            done = deadline.expired()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool).to(input_ids.device)

    return StoppingCriteriaList([_PastDeadline()])
