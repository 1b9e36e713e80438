"""Per-process worker state: settings, the GitHub App and the model engines.

Everything here is created lazily, on the first job, inside the process that
runs jobs (never in a parent that forks), and then reused for every job.
"""

from __future__ import annotations

import logging
import threading
from functools import cache

from reviewbot.config import GenerationSettings
from reviewbot.github_client import GitHubApp
from reviewbot.settings import Settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_engines: dict[str | None, object] = {}


@cache
def settings() -> Settings:
    return Settings.from_env().require_worker()


@cache
def github_app() -> GitHubApp:
    s = settings()
    assert s.app_id is not None and s.private_key is not None  # require_worker checked
    return GitHubApp(s.app_id, s.private_key, s.github_api_url)


def adapter_dir(name: str | None) -> str | None:
    """The adapter directory for a repository's adapter name (None: server default)."""
    s = settings()
    if not name:
        return s.adapter
    if name not in s.adapters:
        known = ", ".join(sorted(s.adapters)) or "none"
        raise ValueError(f"adapter {name!r} is not served here (available: {known})")
    return s.adapters[name]


def engine(adapter_name: str | None = None):
    """The engine for ``adapter_name``, loaded once per process."""
    from reviewbot.engine import load_engine

    path = adapter_dir(adapter_name)
    with _lock:
        if path not in _engines:
            s = settings()
            log.info("loading model %s (adapter %s)", s.model or "demo", path or "none")
            _engines[path] = load_engine(
                s.model,
                adapter=path,
                quantize=s.quantize,
                prompt_format=s.prompt_format,
                settings=GenerationSettings(max_new_tokens=s.max_new_tokens),
            )
        return _engines[path]
