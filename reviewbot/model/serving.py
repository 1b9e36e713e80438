"""Serving: one base model in memory for any number of adapters, and ``load_engine``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from reviewbot.model.adapters import (
    adapter_metadata,
    check_adapter_base,
    choose_prompt_format,
    make_renderer,
    resolve_adapter,
    warn_on_template_change,
)
from reviewbot.model.generation import Engine
from reviewbot.model.loading import LoadedModel, ModelLoadError, load_model
from reviewbot.settings.defaults import (
    DEFAULT_QUANTIZE,
    GenerationSettings,
    InferenceSettings,
    Quantize,
)

if TYPE_CHECKING:
    from reviewbot.model.remote import RemoteEngine

log = logging.getLogger(__name__)


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
        path = resolve_adapter(adapter) if adapter else None
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
            warn_on_template_change(path, meta)
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
    quantize: Quantize = DEFAULT_QUANTIZE,
    prompt_format: str | None = None,
    settings: GenerationSettings = GenerationSettings(),
    device: str | None = None,
    inference: InferenceSettings | None = None,
) -> Engine | RemoteEngine:
    """Load a model (``None``/``"smollm2``: the embedded demo model) ready to generate.

    An adapter trained on another base is refused; its recorded prompt format is used.
    With ``inference``, nothing is loaded but ``model``'s tokenizer: the engine sends its
    prompts to that server (``adapter``: ``served:NAME``, a model name it serves), after
    checking it serves the name (:class:`~reviewbot.model.remote.InferenceError`
    naming the setting otherwise; :class:`~reviewbot.model.remote.InferenceUnavailable`
    when it does not answer).
    """
    if inference is not None:
        from reviewbot.model.remote import InferenceServer, served_adapter

        server = InferenceServer(inference, model, settings)
        (name,) = server.check_adapters([adapter])
        log.info("model %s served by %s as %s", server.name, server.url, name)
        return server.engine(served_adapter(adapter), prompt_format)
    started = time.perf_counter()
    if adapter:
        resolve_adapter(adapter)  # fail before loading the model
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
