"""Per-process worker state: settings, the GitHub App, the pull-request locks, the model.

Everything here is created inside the process that runs jobs (never in a parent
that forks), once, and then reused for every job.

The base model and every adapter the server serves (``REVIEWBOT_ADAPTER``,
``REVIEWBOT_ADAPTERS``) are loaded when the job process starts
(:func:`preload`, from :mod:`worker.readiness`), before it takes a job; each
repository's job switches to its adapter without reloading the base (see
:class:`reviewbot.model.serving.SharedBase`).

The GitHub App learns its own identity (``GET /app``: the bot account whose
comments alone count as reviewbot's) on the first job, once per process.
"""

from __future__ import annotations

import logging
import threading
from functools import cache
from typing import TYPE_CHECKING

import redis

from reviewbot.github.app import GitHubApp
from reviewbot.learning.records import StoreError
from reviewbot.runners.ports import FindingStore
from reviewbot.settings.defaults import (
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    GenerationSettings,
)
from reviewbot.settings.server import Settings
from worker.locks import RedisPullLocks

if TYPE_CHECKING:  # torch is imported with the engine, in the job process only
    from reviewbot.model.generation import Engine
    from reviewbot.model.remote import InferenceServer, RemoteEngine
    from reviewbot.model.serving import SharedBase

log = logging.getLogger(__name__)


@cache
def settings() -> Settings:
    return Settings.from_env().require_worker()


@cache
def github_app() -> GitHubApp:
    s = settings()
    assert s.app_id is not None and s.private_key is not None  # require_worker checked
    return GitHubApp(s.app_id, s.private_key, s.github_api_url, bot_login=s.bot_login)


@cache
def pull_locks() -> RedisPullLocks:
    """The pull-request locks every worker shares, in the queue's Redis."""
    client = redis.Redis.from_url(
        settings().redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )
    return RedisPullLocks(client)


_store_lock = threading.Lock()
_store: list[FindingStore] = []


def finding_store() -> FindingStore | None:
    """The findings database of this process (opened, and migrated, on first use).

    None when it cannot be opened (logged): reviews still post, unrecorded, and the
    next job tries again.
    """
    from reviewbot.store.sql import SqlFindingStore

    with _store_lock:
        if not _store:
            try:
                _store.append(SqlFindingStore.open(settings().database_url))
            except StoreError as e:
                log.warning("findings database unavailable: %s", e)
                return None
        return _store[0]


class ModelRuntime:
    """One base model for the process, with the adapters of ``settings`` on top of it.

    ``engine(name)`` is the worker's EngineProvider: the engine of a repository's
    adapter name (None: the server default adapter, or the base alone).
    ``REVIEWBOT_PROMPT_FORMAT`` is the base's prompt format and that of adapters
    that record none; an adapter's recorded format always wins.

    With ``REVIEWBOT_INFERENCE_URL`` no model is loaded: the engines send their
    prompts to that server (:mod:`reviewbot.model.remote`), the base under
    ``REVIEWBOT_INFERENCE_MODEL`` and each adapter under its ``served:`` name; only the
    model's tokenizer and config are read here.
    """

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        self.settings = settings
        self.device = device
        self.base_loads = 0
        self._lock = threading.Lock()
        self._shared: SharedBase | None = None
        self._remote: InferenceServer | None = None

    def adapter_dir(self, name: str | None, owner: str | None = None) -> str | None:
        """The adapter directory for a repository's adapter name (None: server default);
        RepoConfigError for a name not served here or reserved for other owners."""
        return self.settings.adapter_for(name, owner)

    def shared(self) -> SharedBase:
        """The base model, loaded on first use."""
        from reviewbot.model.loading import load_model
        from reviewbot.model.serving import SharedBase

        with self._lock:
            if self._shared is None:
                s = self.settings
                log.info("loading model %s", s.model or "demo")
                base = load_model(s.model, s.quantize, self.device)
                self.base_loads += 1
                self._shared = SharedBase(
                    base,
                    GenerationSettings(max_new_tokens=s.max_new_tokens),
                    default_format=s.prompt_format,
                )
            return self._shared

    def remote(self) -> InferenceServer:
        """The inference server's client and the model's tokenizer, made on first use."""
        from reviewbot.model.remote import InferenceServer

        with self._lock:
            if self._remote is None:
                s = self.settings
                assert s.inference is not None
                self._remote = InferenceServer(
                    s.inference,
                    s.model,
                    GenerationSettings(max_new_tokens=s.max_new_tokens),
                    default_format=s.prompt_format,
                )
            return self._remote

    def engine(
        self, adapter_name: str | None = None, owner: str | None = None
    ) -> Engine | RemoteEngine:
        """The engine for ``adapter_name`` as ``owner``'s repositories may use it; its
        adapter is loaded once, the base never again."""
        path = self.adapter_dir(adapter_name, owner)
        if self.settings.inference is not None:
            from reviewbot.model.remote import served_adapter

            return self.remote().engine(served_adapter(path))
        return self.shared().engine(path)

    def preload(self) -> SharedBase | InferenceServer:
        """Load the base model, the engine of repositories that name no adapter and
        every adapter the server serves, now (errors propagate). With an inference
        server: its tokenizer, and a check that the server serves every name (a server
        not answering yet is logged: jobs retry until it does)."""
        if self.settings.inference is not None:
            return self._check_remote()
        shared = self.shared()
        shared.engine(self.settings.adapter)
        for path in sorted(set(self.settings.adapters.values())):
            shared.engine(path)
        return shared

    def _check_remote(self) -> InferenceServer:
        from reviewbot.model.remote import InferenceUnavailable

        remote = self.remote()
        try:
            remote.check_adapters([self.settings.adapter, *self.settings.adapters.values()])
        except InferenceUnavailable as e:
            log.warning("%s; jobs wait for it (retried)", e)
        return remote


@cache
def model_runtime() -> ModelRuntime:
    return ModelRuntime(settings())


def preload() -> SharedBase | InferenceServer:
    """Load this process's model and adapters (see :meth:`ModelRuntime.preload`)."""
    return model_runtime().preload()


def adapter_dir(name: str | None, owner: str | None = None) -> str | None:
    """The adapter directory for a repository's adapter name (None: server default)."""
    return model_runtime().adapter_dir(name, owner)


def engine(adapter_name: str | None = None, owner: str | None = None) -> Engine | RemoteEngine:
    """The engine for ``adapter_name`` as ``owner`` may use it (bind ``owner`` with
    :func:`functools.partial` to get a job's EngineProvider)."""
    return model_runtime().engine(adapter_name, owner)
