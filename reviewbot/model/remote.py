"""The inference-server engine: generation by an OpenAI-compatible completions API.

A second engine behind the model port (:class:`~reviewbot.runners.ports.ModelPort`):
vLLM, TGI, llama.cpp's ``llama-server``, Ollama or ``transformers serve``
(``reviewbot model serve``) hold the model, once per GPU, for any number of workers
on any hosts, and batch their requests continuously. The worker keeps only the
model's tokenizer: prompts are rendered by the same renderer (prompt formats, seed
templates, neutralised special tokens) and cut by the same budget rules
(:mod:`reviewbot.model.tokens`) as in-process, then sent as text, all of a job's
prompts at once (``InferenceSettings.concurrency`` in flight), greedy
(``temperature=0``).

``score`` asks for the prompt's log-probabilities (``echo`` + ``logprobs``, token
ids as the prompt: vLLM, llama.cpp); a server that gives none cannot score
(``can_score`` is False, found out once) and findings go unrated
(:func:`reviewbot.runners.ports.rating`).

Errors: a server that does not answer, times out or answers 5xx/429 (after the
client's quick retries) is :class:`InferenceUnavailable`, a transient error the job
queue retries; any other refusal is :class:`InferenceError`, naming the setting to
fix when the served model name is unknown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reviewbot.jobs.deadline import Deadline, DeadlineExceeded
from reviewbot.jobs.transient import TransientError
from reviewbot.model.adapters import choose_prompt_format, make_renderer
from reviewbot.model.loading import (
    ModelLoadError,
    load_config,
    load_tokenizer,
    read_metadata,
    resolve_model,
)
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
from reviewbot.settings.defaults import (
    DEMO_MODEL,
    SERVED_ADAPTER_PREFIX,
    GenerationSettings,
    InferenceSettings,
)
from reviewbot.settings.server import redact_url

log = logging.getLogger(__name__)

#: The settings and options that name the served model (in error messages).
MODEL_SETTING = "REVIEWBOT_INFERENCE_MODEL (--inference-model)"
URL_SETTING = "REVIEWBOT_INFERENCE_URL (--inference-url)"


class InferenceError(ModelLoadError):
    """The inference server refused a request (not worth retrying); safe to show."""

    user_facing = True


class InferenceUnavailable(TransientError):
    """The inference server did not answer, timed out or failed (5xx, 429): retry later."""

    reason = "model-server"
    user_facing = True


def served_adapter(adapter: str | None) -> str | None:
    """The served model name of a ``served:NAME`` adapter (None: the base model);
    ModelLoadError for an adapter directory, which an inference server cannot load."""
    if adapter is None:
        return None
    if not adapter.startswith(SERVED_ADAPTER_PREFIX):
        raise ModelLoadError(
            f"adapter {adapter!r}: with an inference server, name the adapter as the server "
            f"serves it ({SERVED_ADAPTER_PREFIX}NAME, e.g. vLLM's --lora-modules NAME=DIR)"
        )
    name = adapter.removeprefix(SERVED_ADAPTER_PREFIX).strip()
    if not name:
        raise ModelLoadError(f"adapter {adapter!r} names no served model")
    return name


def connect(server: InferenceSettings) -> Any:
    """An ``openai.OpenAI`` client for ``server`` (its own quick retries on connection
    errors, 408, 429 and 5xx, with backoff)."""
    try:
        from openai import OpenAI
    except ImportError as e:  # pragma: no cover - a worker installed without [worker]
        raise InferenceError(
            "the inference-server engine needs the openai package (pip install reviewbot[worker])"
        ) from e
    return OpenAI(
        base_url=server.url,
        api_key=server.api_key or "none",
        timeout=server.timeout,
        max_retries=server.retries,
    )


class InferenceServer:
    """One inference server: its client, the model's tokenizer and config (read
    locally, for rendering and budgets), and one :class:`RemoteEngine` per served name.

    ``model`` names the model the server runs (a hub id, a directory, or ``smollm2``
    for the demo model): only its tokenizer and config are loaded here.
    """

    def __init__(
        self,
        server: InferenceSettings,
        model: str | None = None,
        settings: GenerationSettings = GenerationSettings(),
        default_format: str | None = None,
    ) -> None:
        self.server = server
        self.name = model or DEMO_MODEL
        self.path = resolve_model(model)
        self.tokenizer = load_tokenizer(self.path)
        self.config = load_config(self.path)
        self.meta = read_metadata(Path(self.path)) if Path(self.path).is_dir() else {}
        self.settings = settings
        self.default_format = default_format
        self.client = connect(server)
        self.url = redact_url(server.url)
        bos_id = self.tokenizer.bos_token_id
        self.adds_bos = bos_id is not None and self.tokenizer("")["input_ids"][:1] == [bos_id]
        """Whether the tokenizer adds BOS itself (so does the server, to the text it gets)."""
        self._lock = threading.Lock()
        self._served: list[dict[str, Any]] | None = None
        self._engines: dict[tuple[str | None, str | None], RemoteEngine] = {}
        self._can_score: bool | None = None

    # -- what the server serves --

    def models(self) -> list[dict[str, Any]]:
        """The server's ``GET /models`` entries (asked once)."""
        with self._lock:
            if self._served is None:
                try:
                    page = self.client.models.list()
                except Exception as e:
                    raise self.translate(e) from e
                self._served = [m.model_dump() for m in page.data]
            return self._served

    def served_names(self) -> list[str]:
        return [str(m.get("id")) for m in self.models()]

    def default_model(self) -> str:
        """The configured served name, or the one model the server lists."""
        if self.server.model:
            return self.server.model
        names = self.served_names()
        if len(names) != 1:
            listed = ", ".join(names) or "none"
            raise InferenceError(
                f"{self.url} serves {len(names)} models ({listed}): set {MODEL_SETTING}"
            )
        return names[0]

    def check(self, served: Sequence[str | None] = (None,)) -> list[str]:
        """The served names (None: the default model), after checking the server lists
        each; InferenceError naming the setting for one it does not serve."""
        names = self.served_names()
        out = []
        for name in served:
            chosen = name or self.default_model()
            if chosen not in names:
                raise InferenceError(self._unknown(chosen, names))
            out.append(chosen)
        return out

    def check_adapters(self, adapters: Iterable[str | None]) -> list[str]:
        """:meth:`check` for adapter values (``served:NAME``; None: the base model)."""
        served = {served_adapter(a) for a in adapters}
        return self.check(sorted(served, key=lambda n: n or ""))

    def _unknown(self, name: str, names: Sequence[str]) -> str:
        return (
            f"the inference server {self.url} does not serve a model named {name!r} "
            f"(it serves: {', '.join(names) or 'none'}); set {MODEL_SETTING} or the adapter's "
            "served: name to one of them"
        )

    @property
    def context_length(self) -> int:
        """The configured context, else the server's (``max_model_len``), else the config's."""
        if self.server.context_length:
            return self.server.context_length
        local = config_context(self.config, self.settings.fallback_context)
        try:
            lengths = [int(m["max_model_len"]) for m in self.models() if m.get("max_model_len")]
        except (InferenceError, InferenceUnavailable, TypeError, ValueError):
            lengths = []
        return min([local, *lengths])

    # -- engines --

    def engine(self, served: str | None = None, prompt_format: str | None = None) -> RemoteEngine:
        """The engine of served model ``served`` (None: the default model), made once."""
        with self._lock:
            key = (served, prompt_format)
            if key not in self._engines:
                fmt = choose_prompt_format(
                    prompt_format, {}, self.tokenizer, self.meta, fallback=self.default_format
                )
                self._engines[key] = RemoteEngine(
                    self, served, make_renderer(fmt, self.tokenizer), adapter=served
                )
            return self._engines[key]

    # -- requests --

    def translate(self, error: Exception, served: str | None = None) -> Exception:
        """The reviewbot error for an ``openai`` client error."""
        import openai

        if isinstance(error, openai.APIConnectionError):  # includes timeouts
            return InferenceUnavailable(f"the inference server {self.url} did not answer: {error}")
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            detail = _detail(error)
            if status >= 500 or status in (408, 429):
                return InferenceUnavailable(
                    f"the inference server {self.url} failed ({status}): {detail}"
                )
            if status in (400, 404, 422) and served is not None:
                try:
                    names = self.served_names()
                except (InferenceError, InferenceUnavailable):
                    names = []
                if names and served not in names:
                    return InferenceError(self._unknown(served, names))
            if status in (401, 403):
                detail += " (check REVIEWBOT_INFERENCE_API_KEY)"
            return InferenceError(f"the inference server {self.url} refused ({status}): {detail}")
        return error

    def complete(
        self,
        served: str,
        prompt: str | list[int],
        max_tokens: int,
        deadline: Deadline | None,
        **extra: Any,
    ) -> Any:
        """One ``POST /completions`` (greedy), within ``deadline``; the first choice."""
        timeout = self.server.timeout
        if deadline is not None:
            deadline.check("generation")
            timeout = max(1.0, min(timeout, deadline.remaining()))
        try:
            reply = self.client.with_options(timeout=timeout).completions.create(
                model=served,
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=0,
                seed=self.settings.seed,
                **extra,
            )
        except Exception as e:
            if deadline is not None and deadline.expired():
                raise DeadlineExceeded(deadline.seconds, "generation") from e
            raise self.translate(e, served) from e
        if not reply.choices:
            raise InferenceError(f"the inference server {self.url} returned no completion")
        return reply

    def can_score(self, served: str) -> bool:
        """Whether the server returns prompt log-probabilities (asked once, with a
        two-token prompt); a transient failure is raised, a refusal means no."""
        with self._lock:
            known = self._can_score
        if known is not None:
            return known
        ids = self.tokenizer("a b", add_special_tokens=False)["input_ids"][:2] or [0, 0]
        try:
            found = self.prompt_logprobs(served, list(ids), None) is not None
        except InferenceError as e:
            log.info("%s gives no prompt log-probabilities: %s", self.url, e)
            found = False
        if not found:
            log.warning(
                "the inference server %s returns no prompt log-probabilities "
                "(echo + logprobs): findings will not be rated",
                self.url,
            )
        with self._lock:
            self._can_score = found
        return found

    def prompt_logprobs(
        self, served: str, ids: list[int], deadline: Deadline | None
    ) -> list[float | None] | None:
        """Log-probability of each token of ``ids`` given those before it (the first
        None), from ``echo``; None when the server gives none."""
        reply = self.complete(served, ids, 1, deadline, echo=True, logprobs=0)
        logprobs = getattr(reply.choices[0], "logprobs", None)
        values = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
        if not values or len(values) < len(ids):
            return None
        return list(values[: len(ids)])


def _detail(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") or inner.get("detail") if isinstance(inner, dict) else inner
        if message:
            return str(message)[:500]
    return str(getattr(error, "message", error))[:500]


class RemoteEngine:
    """The model port over an inference server: ``generate`` and ``score`` as the
    in-process :class:`~reviewbot.model.generation.Engine` does them, by requests."""

    quantized = False
    footprint_bytes = 0

    def __init__(
        self,
        server: InferenceServer,
        served: str | None,
        renderer: Any,
        adapter: str | None = None,
    ) -> None:
        self.server = server
        self.served = served
        self.renderer = renderer
        self.prompt_format = renderer.fmt
        self.tokenizer = server.tokenizer
        self.settings = server.settings
        self.model_name = server.name
        self.model_path = server.path
        self.adapter = adapter
        """The served adapter name (None: the base model)."""
        self.adapter_meta: dict[str, Any] = {}
        self.device = server.url
        self.last_stats = GenerationStats()
        self.last_score_stats = GenerationStats()

    @property
    def served_name(self) -> str:
        return self.served or self.server.default_model()

    @property
    def context_length(self) -> int:
        return self.server.context_length

    @property
    def can_score(self) -> bool:
        return self.server.can_score(self.served_name)

    def budgets(self, max_new_tokens: int) -> tuple[int, int]:
        return context_budgets(self.context_length, max_new_tokens, self.settings)

    def wire_text(self, prompt: str, ids: list[int], cut: bool) -> str:
        """The text to send for ``prompt`` (``ids``, maybe cut): the server tokenizes it
        back to ``ids`` with its own special tokens added (BOS), as in-process."""
        tok = self.tokenizer
        bos, bos_id = tok.bos_token, tok.bos_token_id
        adds_bos = self.server.adds_bos
        if not cut:
            return prompt[len(bos) :] if adds_bos and bos and prompt.startswith(bos) else prompt
        body = ids[1:] if adds_bos and ids[:1] == [bos_id] else ids
        return tok.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def generate(
        self, prompts: list[str], max_new_tokens: int | None = None, progress: bool = False
    ) -> list[str]:
        """Greedy completions of ``prompts`` (new text only), in input order; all sent at
        once (``concurrency`` in flight). Inside a job, past its deadline:
        :class:`~reviewbot.jobs.deadline.DeadlineExceeded`."""
        deadline, requested = begin_generation(self.settings, max_new_tokens)
        if not prompts:
            self.last_stats = GenerationStats()
            return []
        started = time.perf_counter()
        served = self.served_name
        budget, new_tokens = self.budgets(requested)
        encoded = [fit_prompt(self.tokenizer, p, budget) for p in prompts]
        texts = [
            self.wire_text(p, ids, cut) for p, (ids, cut) in zip(prompts, encoded, strict=True)
        ]
        first: list[float] = []

        def one(text: str) -> tuple[str, int]:
            reply = self.server.complete(served, text, new_tokens, deadline)
            usage = getattr(reply, "usage", None)
            if not first:
                first.append(time.perf_counter() - started)
            return reply.choices[0].text or "", int(getattr(usage, "completion_tokens", 0) or 0)

        results = _all(one, texts, self.server.server.concurrency, progress)
        if deadline is not None:
            deadline.check("generation")
        self.last_stats = GenerationStats(
            prompts=len(prompts),
            prompt_tokens=sum(len(ids) for ids, _ in encoded),
            generated_tokens=sum(n for _, n in results),
            seconds=time.perf_counter() - started,
            first_output_seconds=first[0] if first else None,
            truncated=sum(cut for _, cut in encoded),
        )
        return [text for text, _ in results]

    def completion_ids(self, completion: str) -> list[int]:
        return completion_token_ids(self.tokenizer, self.renderer, completion)

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """Mean log-probability per token of each completion given its prompt, from the
        server's prompt log-probabilities (cut as in-process); InferenceError when the
        server gives none (see ``can_score``)."""
        deadline = begin_scoring(prompts, completions)
        if not prompts:
            self.last_score_stats = GenerationStats()
            return []
        served = self.served_name
        if not self.can_score:
            raise InferenceError(
                f"the inference server {self.server.url} returns no prompt log-probabilities "
                "(echo + logprobs): it cannot score findings"
            )
        started = time.perf_counter()
        context = self.context_length
        room = completion_room(context, self.settings)
        rows: list[tuple[list[int], int]] = []
        truncated = 0
        for prompt, completion in zip(prompts, completions, strict=True):
            target = self.completion_ids(completion)[:room]
            if not target:
                raise ValueError("cannot score an empty completion")
            ids, cut = fit_prompt(self.tokenizer, prompt, context - len(target))
            truncated += cut
            rows.append((ids + target, len(target)))

        def one(row: tuple[list[int], int]) -> float:
            ids, n = row
            values = self.server.prompt_logprobs(served, ids, deadline)
            tail = values[-n:] if values else []
            if len(tail) != n or any(v is None for v in tail):
                raise InferenceError(
                    f"the inference server {self.server.url} returned no log-probabilities"
                )
            return sum(float(v) for v in tail if v is not None) / n

        out = _all(one, rows, self.server.server.concurrency, False)
        self.last_score_stats = GenerationStats(
            prompts=len(prompts),
            prompt_tokens=sum(len(ids) for ids, _ in rows),
            seconds=time.perf_counter() - started,
            truncated=truncated,
        )
        return out


def _all(fn: Callable[[Any], Any], items: Sequence[Any], concurrency: int, progress: bool) -> list:
    """``fn`` of every item, ``concurrency`` at a time, in order; the first error raised
    (the requests not yet sent are cancelled)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc="generating", unit="prompt", disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            out = []
            for future in futures:
                out.append(future.result())
                bar.update(1)
            return out
        finally:
            for future in futures:
                future.cancel()
