"""The server's settings: ``REVIEWBOT_*`` environment variables, validated at start.

``Settings.from_env()`` checks the format of every variable that is set and
reports all problems at once (:class:`SettingsError`); ``require_web()`` and
``require_worker()`` add what each process needs. Messages name the variable and
never contain a secret value; ``repr()`` redacts secrets.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from reviewbot.settings.defaults import (
    DATABASE_URL_ENV,
    DEFAULT_GITHUB_API_URL,
    DEFAULT_LOG_FORMAT,
    DEFAULT_METRICS_PORT,
    DEFAULT_PROFILE,
    DEFAULT_QUANTIZE,
    DEFAULT_REDIS_URL,
    INSTALLATION_MAX_ACTIVE_JOBS,
    INSTALLATION_TOKEN_BUDGET,
    JOB_MAX_ATTEMPTS,
    JOB_TIME_BUDGET,
    LOG_FORMATS,
    MODEL_LOAD_TIMEOUT,
    OUTCOME_REFRESH_INTERVAL,
    OUTCOME_REFRESH_MAX_REQUESTS,
    PROFILES,
    PROMPT_FORMATS,
    QUANTIZE_CHOICES,
    SERVED_ADAPTER_PREFIX,
    SERVER_REVIEW_DEFAULTS,
    TASK_LIMIT_GRACE_MAX,
    TASK_LIMIT_GRACE_MIN,
    VISIBILITY_TIMEOUT,
    GenerationSettings,
    InferenceSettings,
    ReviewOptions,
)
from reviewbot.settings.defaults import (
    REVIEW_DRAFTS as DEFAULT_REVIEW_DRAFTS,
)
from reviewbot.settings.repo import RepoConfigError

ENV_PREFIX = "REVIEWBOT_"
WEBHOOK_SECRET = "REVIEWBOT_WEBHOOK_SECRET"
APP_ID = "REVIEWBOT_APP_ID"
PRIVATE_KEY = "REVIEWBOT_PRIVATE_KEY"
PRIVATE_KEY_PATH = "REVIEWBOT_PRIVATE_KEY_PATH"
GITHUB_API_URL = "REVIEWBOT_GITHUB_API_URL"
REDIS_URL = "REVIEWBOT_REDIS_URL"
MODEL = "REVIEWBOT_MODEL"
ADAPTER = "REVIEWBOT_ADAPTER"
ADAPTERS = "REVIEWBOT_ADAPTERS"
PROMPT_FORMAT = "REVIEWBOT_PROMPT_FORMAT"
QUANTIZE = "REVIEWBOT_QUANTIZE"
MAX_NEW_TOKENS = "REVIEWBOT_MAX_NEW_TOKENS"
BOT_LOGIN = "REVIEWBOT_BOT_LOGIN"
REVIEW_DRAFTS = "REVIEWBOT_REVIEW_DRAFTS"
CHANGED_LINES = "REVIEWBOT_CHANGED_LINES"
PROFILE = "REVIEWBOT_PROFILE"
VISIBILITY = "REVIEWBOT_VISIBILITY_TIMEOUT"
TIME_BUDGET = "REVIEWBOT_JOB_TIME_BUDGET"
MAX_ATTEMPTS = "REVIEWBOT_JOB_MAX_ATTEMPTS"
WEB_REACTIONS = "REVIEWBOT_WEB_REACTIONS"
MAX_JOBS = "REVIEWBOT_INSTALLATION_MAX_JOBS"
TOKEN_BUDGET = "REVIEWBOT_INSTALLATION_TOKEN_BUDGET"
LOG_FORMAT = "REVIEWBOT_LOG_FORMAT"
METRICS_PORT = "REVIEWBOT_METRICS_PORT"
LOAD_TIMEOUT = "REVIEWBOT_MODEL_LOAD_TIMEOUT"
DATABASE_URL = DATABASE_URL_ENV
OUTCOME_INTERVAL = "REVIEWBOT_OUTCOME_REFRESH_SECONDS"
OUTCOME_REQUESTS = "REVIEWBOT_OUTCOME_MAX_REQUESTS"
INFERENCE_URL = "REVIEWBOT_INFERENCE_URL"
INFERENCE_MODEL = "REVIEWBOT_INFERENCE_MODEL"
INFERENCE_API_KEY = "REVIEWBOT_INFERENCE_API_KEY"
INFERENCE_CONCURRENCY = "REVIEWBOT_INFERENCE_CONCURRENCY"
INFERENCE_TIMEOUT = "REVIEWBOT_INFERENCE_TIMEOUT"
INFERENCE_CONTEXT = "REVIEWBOT_INFERENCE_CONTEXT"

REDIS_SCHEMES = ("redis", "rediss", "unix")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: Query parameters whose values are secrets (redacted in logs).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth", re.I)
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+-----END [A-Z ]*PRIVATE KEY-----", re.S)

T = TypeVar("T")


class SettingsError(ValueError):
    """One or more settings are missing or invalid; ``problems`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid reviewbot settings:\n{lines}")


@dataclass(frozen=True, repr=False)
class Settings:
    """Validated server settings (see the module docstring for the variables)."""

    webhook_secrets: tuple[str, ...] = ()
    app_id: int | None = None
    private_key: str | None = None
    private_key_path: Path | None = None
    github_api_url: str = DEFAULT_GITHUB_API_URL
    redis_url: str = DEFAULT_REDIS_URL
    database_url: str | None = None
    """The findings database (SQLAlchemy URL); None: a SQLite file under the cache dir."""
    outcome_refresh_seconds: int = OUTCOME_REFRESH_INTERVAL
    """How often ``reviewbot beat`` refreshes the outcome labels of posted findings."""
    outcome_max_requests: int = OUTCOME_REFRESH_MAX_REQUESTS
    """GitHub requests one installation's outcome refresh may make."""
    model: str | None = None
    adapter: str | None = None
    adapters: dict[str, str] = field(default_factory=dict, hash=False)
    adapter_owners: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)
    """Adapters that name owners (``name@owner+owner=/dir``): only their repositories
    may use them; an adapter not listed here serves every installation."""
    prompt_format: str | None = None
    quantize: str = DEFAULT_QUANTIZE
    max_new_tokens: int = GenerationSettings().max_new_tokens
    bot_login: str | None = None
    """Override of reviewbot's own login (an App's ``{slug}[bot]``, or the account of a
    token); unset, processes with the App's credentials learn it from GitHub (GET /app)."""
    review_drafts: bool = DEFAULT_REVIEW_DRAFTS
    changed_lines: bool = ReviewOptions().changed_lines
    """Show the model which lines a pull request changed, for repositories whose
    ``.github/reviewbot.toml`` does not say (its ``changed_lines`` key)."""
    profile: str = DEFAULT_PROFILE
    """The review profile of repositories whose ``.github/reviewbot.toml`` names none."""
    job_time_budget: int = JOB_TIME_BUDGET
    """Seconds one attempt at a job may take (see :attr:`task_time_limits`)."""
    job_max_attempts: int = JOB_MAX_ATTEMPTS
    """Deliveries of a job before it goes to the dead letters."""
    visibility_timeout: int = VISIBILITY_TIMEOUT
    """Seconds before a dead worker's job is redelivered (Redis broker)."""
    web_reactions: bool = False
    """The web process reacts 👀 to a command at once (it then needs the App's id and
    key); off, it never reads the key and the worker reacts when it starts the job."""
    installation_max_jobs: int = INSTALLATION_MAX_ACTIVE_JOBS
    """Jobs queued or running per installation; deliveries beyond it are refused (429)."""
    installation_token_budget: int = INSTALLATION_TOKEN_BUDGET
    """Prompt tokens per installation per TOKEN_BUDGET_WINDOW_SECONDS; past it jobs wait."""
    log_format: str = DEFAULT_LOG_FORMAT
    """``text`` or ``json`` (one object per line) for every process's log."""
    metrics_port: int = DEFAULT_METRICS_PORT
    """The port a worker serves its Prometheus metrics on (0: none)."""
    model_load_timeout: int = MODEL_LOAD_TIMEOUT
    """Seconds a worker's job process may take to load the model and adapters at start."""
    inference: InferenceSettings | None = None
    """An OpenAI-compatible inference server that generates instead of an in-process
    model (``REVIEWBOT_INFERENCE_URL``); None: each worker loads the model."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read and validate ``REVIEWBOT_*`` variables; raise SettingsError on any problem."""
        env = _Env(environ)
        key_text, key_path = _private_key(env)
        adapters, adapter_owners = _adapters(env)
        settings = cls(
            webhook_secrets=_secrets(env),
            app_id=env.parse(APP_ID, _positive_int, "must be a positive integer"),
            private_key=key_text,
            private_key_path=key_path,
            github_api_url=_http_url(env) or DEFAULT_GITHUB_API_URL,
            redis_url=_redis_url(env) or DEFAULT_REDIS_URL,
            database_url=env.get(DATABASE_URL),
            outcome_refresh_seconds=env.parse(
                OUTCOME_INTERVAL, _positive_int, "must be a positive integer"
            )
            or OUTCOME_REFRESH_INTERVAL,
            outcome_max_requests=env.parse(
                OUTCOME_REQUESTS, _positive_int, "must be a positive integer"
            )
            or OUTCOME_REFRESH_MAX_REQUESTS,
            model=env.get(MODEL),
            adapter=env.get(ADAPTER),
            adapters=adapters,
            adapter_owners=adapter_owners,
            prompt_format=env.choice(PROMPT_FORMAT, PROMPT_FORMATS),
            quantize=env.choice(QUANTIZE, QUANTIZE_CHOICES) or DEFAULT_QUANTIZE,
            max_new_tokens=env.parse(MAX_NEW_TOKENS, _positive_int, "must be a positive integer")
            or GenerationSettings().max_new_tokens,
            bot_login=_bot_login(env),
            review_drafts=_or(
                env.parse(REVIEW_DRAFTS, _bool, "must be true or false"), DEFAULT_REVIEW_DRAFTS
            ),
            profile=env.choice(PROFILE, tuple(PROFILES)) or DEFAULT_PROFILE,
            changed_lines=_or(
                env.parse(CHANGED_LINES, _bool, "must be true or false"),
                ReviewOptions().changed_lines,
            ),
            visibility_timeout=env.parse(VISIBILITY, _positive_int, "must be a positive integer")
            or VISIBILITY_TIMEOUT,
            job_time_budget=env.parse(TIME_BUDGET, _positive_int, "must be a positive integer")
            or JOB_TIME_BUDGET,
            job_max_attempts=env.parse(MAX_ATTEMPTS, _positive_int, "must be a positive integer")
            or JOB_MAX_ATTEMPTS,
            web_reactions=_or(env.parse(WEB_REACTIONS, _bool, "must be true or false"), False),
            installation_max_jobs=env.parse(MAX_JOBS, _positive_int, "must be a positive integer")
            or INSTALLATION_MAX_ACTIVE_JOBS,
            installation_token_budget=env.parse(
                TOKEN_BUDGET, _positive_int, "must be a positive integer"
            )
            or INSTALLATION_TOKEN_BUDGET,
            log_format=env.choice(LOG_FORMAT, LOG_FORMATS) or DEFAULT_LOG_FORMAT,
            metrics_port=_or(
                env.parse(METRICS_PORT, _port, "must be a port number, or 0 for no metrics"),
                DEFAULT_METRICS_PORT,
            ),
            model_load_timeout=env.parse(LOAD_TIMEOUT, _positive_int, "must be a positive integer")
            or MODEL_LOAD_TIMEOUT,
            inference=_inference(env),
        )
        env.raise_if_problems()
        return settings

    def review_defaults(self) -> ReviewOptions:
        """What a review produces where a repository does not say: the server's profile
        threshold and ``changed_lines``."""
        return replace(
            SERVER_REVIEW_DEFAULTS,
            changed_lines=self.changed_lines,
            min_confidence=PROFILES[self.profile],
        )

    def require_web(self) -> Settings:
        """Check what the webhook server needs (a webhook secret; the App's id and key
        only to react 👀 itself); return self."""
        problems = []
        if not self.webhook_secrets:
            problems.append(f"{WEBHOOK_SECRET} is required by the web server")
        if self.web_reactions and (self.app_id is None or self.private_key is None):
            problems.append(
                f"{WEB_REACTIONS} needs {APP_ID} and {PRIVATE_KEY} or {PRIVATE_KEY_PATH}"
            )
        if problems:
            raise SettingsError(problems)
        return self

    def require_worker(self) -> Settings:
        """Check what a worker needs (App id, private key, adapter dirs); return self."""
        problems = []
        if self.app_id is None:
            problems.append(f"{APP_ID} is required by the worker")
        if self.private_key is None:
            problems.append(f"{PRIVATE_KEY} or {PRIVATE_KEY_PATH} is required by the worker")
        adapters = [(ADAPTER, None, self.adapter)] if self.adapter else []
        adapters += [(ADAPTERS, name, path) for name, path in self.adapters.items()]
        for variable, name, path in adapters:
            problem = self._adapter_problem(path)
            if problem:
                which = f"adapter {name!r}" if name else "the adapter"
                problems.append(f"{variable}: {which} {problem}")
        limits = self.time_limit_problem()
        if limits:
            problems.append(limits)
        if problems:
            raise SettingsError(problems)
        return self

    @property
    def task_time_limits(self) -> tuple[int, int]:
        """Celery's (soft, hard) time limits of a job: the budget plus one grace, plus two."""
        budget = self.job_time_budget
        grace = min(TASK_LIMIT_GRACE_MAX, max(TASK_LIMIT_GRACE_MIN, budget // 10))
        return budget + grace, budget + 2 * grace

    def time_limit_problem(self) -> str | None:
        """Why the visibility timeout is too short for the hard time limit, or None.

        A job still running when the visibility timeout passes is handed to a worker
        again and runs twice, so the timeout must outlast the hard limit.
        """
        hard = self.task_time_limits[1]
        if self.visibility_timeout > hard:
            return None
        return (
            f"{VISIBILITY} ({self.visibility_timeout} s) must be above a job's hard time "
            f"limit ({hard} s: {TIME_BUDGET} {self.job_time_budget} s plus two graces), "
            "or a running job is redelivered and runs twice"
        )

    def _adapter_problem(self, path: str) -> str | None:
        """What is wrong with an adapter value: a directory in-process, a ``served:`` name
        with an inference server."""
        served = path.startswith(SERVED_ADAPTER_PREFIX)
        if self.inference is None and served:
            return f"{path!r} is served by an inference server, but {INFERENCE_URL} is not set"
        if self.inference is not None and not served:
            return (
                f"{path!r} must be the inference server's name for it "
                f"({SERVED_ADAPTER_PREFIX}NAME) when {INFERENCE_URL} is set"
            )
        if served and not path[len(SERVED_ADAPTER_PREFIX) :].strip():
            return f"{path!r} names no served model"
        if not served and not Path(path).expanduser().is_dir():
            return f"directory {path!r} does not exist"
        return None

    def adapter_for(self, name: str | None, owner: str | None) -> str | None:
        """The adapter directory a repository of ``owner`` gets for its ``adapter`` key.

        None (no key): the server's default adapter, or the base model alone. A name
        the server does not serve, or one reserved for other owners, is the
        repository's configuration error (:class:`RepoConfigError`, naming the key).
        """
        if not name:
            return self.adapter
        usable = sorted(n for n in self.adapters if self._may_use(n, owner))
        if name not in self.adapters or not self._may_use(name, owner):
            raise RepoConfigError(
                f"adapter {name!r} is not available to {owner or 'this repository'} "
                f"(available: {', '.join(usable) or 'none'})",
                key="adapter",
            )
        return self.adapters[name]

    def _may_use(self, name: str, owner: str | None) -> bool:
        allowed = self.adapter_owners.get(name)
        return allowed is None or (owner is not None and owner.lower() in allowed)

    def __repr__(self) -> str:
        shown: dict[str, object] = {
            "webhook_secrets": _Redacted(f"<{len(self.webhook_secrets)} redacted>"),
            "app_id": self.app_id,
            "private_key": None if self.private_key is None else _Redacted("<redacted>"),
            "private_key_path": self.private_key_path,
            "github_api_url": redact_url(self.github_api_url),
            "redis_url": redact_url(self.redis_url),
            "database_url": redact_url(self.database_url) if self.database_url else None,
            "outcome_refresh_seconds": self.outcome_refresh_seconds,
            "outcome_max_requests": self.outcome_max_requests,
            "model": self.model,
            "adapter": self.adapter,
            "adapters": self.adapters,
            "adapter_owners": {k: sorted(v) for k, v in self.adapter_owners.items()},
            "prompt_format": self.prompt_format,
            "quantize": self.quantize,
            "max_new_tokens": self.max_new_tokens,
            "bot_login": self.bot_login,
            "review_drafts": self.review_drafts,
            "changed_lines": self.changed_lines,
            "profile": self.profile,
            "visibility_timeout": self.visibility_timeout,
            "job_time_budget": self.job_time_budget,
            "job_max_attempts": self.job_max_attempts,
            "web_reactions": self.web_reactions,
            "installation_max_jobs": self.installation_max_jobs,
            "installation_token_budget": self.installation_token_budget,
            "log_format": self.log_format,
            "metrics_port": self.metrics_port,
            "model_load_timeout": self.model_load_timeout,
            "inference": None
            if self.inference is None
            else {
                "url": redact_url(self.inference.url),
                "model": self.inference.model,
                "api_key": None if self.inference.api_key is None else _Redacted("<redacted>"),
                "concurrency": self.inference.concurrency,
                "timeout": self.inference.timeout,
                "context_length": self.inference.context_length,
            },
        }
        body = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"Settings({body})"

    __str__ = __repr__

    def secrets(self) -> tuple[str, ...]:
        """The secret values in these settings (the log formatters mask them)."""
        found = [*self.webhook_secrets]
        if self.private_key:
            found.append(self.private_key.strip())
        if self.inference is not None and self.inference.api_key:
            found.append(self.inference.api_key)
        inference_url = self.inference.url if self.inference is not None else ""
        for url in (self.redis_url, self.github_api_url, self.database_url or "", inference_url):
            password = _password(url)
            if password:
                found.append(password)
        return tuple(found)


def log_format(environ: Mapping[str, str] = os.environ) -> str:
    """``REVIEWBOT_LOG_FORMAT``, or the default when it is unset or not a known format
    (:meth:`Settings.from_env` reports an unknown one)."""
    value = (environ.get(LOG_FORMAT) or "").strip()
    return value if value in LOG_FORMATS else DEFAULT_LOG_FORMAT


class _Redacted(str):
    """A placeholder whose repr is its text, without quotes."""

    def __repr__(self) -> str:
        return str(self)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log): the one in the
    authority (``user:pass@``) and query parameters such as ``?password=``."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "<unparseable url>"
    if parts.password is not None:
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        hidden = [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}{fragment}"


class _Env:
    """Reads variables (blank = unset) and collects problems."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def parse(self, name: str, convert: Callable[[str], T], requirement: str) -> T | None:
        """``convert(value)``, or None (and a problem) when it raises ValueError."""
        value = self.get(name)
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError:
            self.problem(f"{name} {requirement} (got {value!r})")
            return None

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.get(name)
        if value is None or value in choices:
            return value
        self.problem(f"{name} must be one of {', '.join(choices)} (got {value!r})")
        return None

    def raise_if_problems(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)


def _or(value: T | None, default: T) -> T:
    """``value`` unless it is None (unset or invalid), else ``default``."""
    return default if value is None else value


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(value)
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(value)
    return number


def _password(url: str) -> str | None:
    """The password in ``url``'s authority, if any."""
    parts = split_url(url)
    return parts.password if parts is not None else None


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


def _bot_login(env: _Env) -> str | None:
    """A GitHub login, optionally a bot's (``name[bot]``)."""
    value = env.get(BOT_LOGIN)
    if value is None or _LOGIN.fullmatch(value):
        return value
    env.problem(f"{BOT_LOGIN} must be a GitHub login such as my-app[bot] (got {value!r})")
    return None


def _secrets(env: _Env) -> tuple[str, ...]:
    """The webhook secret(s); a comma-separated list allows rotation."""
    value = env.get(WEBHOOK_SECRET)
    if value is None:
        return ()
    secrets = tuple(part.strip() for part in value.split(","))
    if any(not s for s in secrets):
        env.problem(f"{WEBHOOK_SECRET} has an empty entry in its comma-separated list")
        return tuple(s for s in secrets if s)
    return secrets


def _private_key(env: _Env) -> tuple[str | None, Path | None]:
    """The App's PEM key from the variable (``\\n`` escapes allowed) or from a file."""
    text, path_value = env.get(PRIVATE_KEY), env.get(PRIVATE_KEY_PATH)
    if text is not None and path_value is not None:
        env.problem(f"set only one of {PRIVATE_KEY} and {PRIVATE_KEY_PATH}")
        return None, None
    if text is not None:
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        return _pem(env, PRIVATE_KEY, text), None
    if path_value is None:
        return None, None
    path = Path(path_value).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        env.problem(f"{PRIVATE_KEY_PATH}: file {str(path)!r} does not exist")
        return None, path
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        env.problem(f"{PRIVATE_KEY_PATH}: cannot read {str(path)!r} ({reason})")
        return None, path
    return _pem(env, PRIVATE_KEY_PATH, content), path


def _pem(env: _Env, name: str, text: str) -> str | None:
    text = text.strip() + "\n"
    if not _PEM.search(text):
        env.problem(f"{name} is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        return None
    return text


def _http_url(env: _Env) -> str | None:
    """The GitHub API URL: https, or plain http to a loopback host only (tests)."""
    value = env.get(GITHUB_API_URL)
    if value is None:
        return None
    parts = split_url(value)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        env.problem(f"{GITHUB_API_URL} must be an https URL such as {DEFAULT_GITHUB_API_URL}")
        return None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        env.problem(
            f"{GITHUB_API_URL} must use https (plain http is allowed for loopback hosts only): "
            "the App's tokens travel with every request"
        )
        return None
    return value.rstrip("/")


def inference_from_env(environ: Mapping[str, str]) -> InferenceSettings | None:
    """``REVIEWBOT_INFERENCE_*`` alone (the CLI's ``--inference-*`` options go through
    here too); SettingsError naming each bad variable."""
    env = _Env(environ)
    inference = _inference(env)
    env.raise_if_problems()
    return inference


def _inference(env: _Env) -> InferenceSettings | None:
    """The inference server (``REVIEWBOT_INFERENCE_*``), or None when no URL is set."""
    url = env.get(INFERENCE_URL)
    others = (INFERENCE_MODEL, INFERENCE_API_KEY, INFERENCE_CONCURRENCY, INFERENCE_TIMEOUT)
    if url is None:
        for name in (*others, INFERENCE_CONTEXT):
            if env.get(name) is not None:
                env.problem(f"{name} needs {INFERENCE_URL}")
        return None
    parts = split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        env.problem(f"{INFERENCE_URL} must be an http(s) URL such as http://127.0.0.1:8000/v1")
        return None
    defaults = InferenceSettings(url=url)
    return InferenceSettings(
        url=url.rstrip("/"),
        model=env.get(INFERENCE_MODEL),
        api_key=env.get(INFERENCE_API_KEY),
        concurrency=env.parse(INFERENCE_CONCURRENCY, _positive_int, "must be a positive integer")
        or defaults.concurrency,
        timeout=env.parse(INFERENCE_TIMEOUT, _positive_int, "must be a positive integer")
        or defaults.timeout,
        context_length=env.parse(INFERENCE_CONTEXT, _positive_int, "must be a positive integer"),
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redis_url(env: _Env) -> str | None:
    value = env.get(REDIS_URL)
    if value is None:
        return None
    parts = split_url(value)
    if parts is None or parts.scheme not in REDIS_SCHEMES:
        ok = False
    else:
        ok = bool(parts.path if parts.scheme == "unix" else parts.hostname)
    if not ok:
        env.problem(f"{REDIS_URL} must be a redis://, rediss:// or unix:// URL")
        return None
    return value


def split_url(url: str) -> SplitResult | None:
    """``urlsplit(url)`` with its port checked, or None when it does not parse."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return None
    return parts


def _adapters(env: _Env) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """``name=/dir,team@org+other-org=/dir2`` → directories by name, and the owners
    allowed to use each adapter that names them (an adapter naming none serves all)."""
    value = env.get(ADAPTERS)
    if value is None:
        return {}, {}
    adapters: dict[str, str] = {}
    owners: dict[str, frozenset[str]] = {}
    for item in value.split(","):
        head, sep, path = (s.strip() for s in item.partition("="))
        name, at, allowed = (s.strip() for s in head.partition("@"))
        logins = frozenset(o.strip().lower() for o in allowed.split("+") if o.strip())
        if not sep or not name or not path:
            env.problem(
                f"{ADAPTERS} entries must read name=/dir or name@owner+owner=/dir "
                f"(got {item.strip()!r})"
            )
        elif at and (not logins or not all(_OWNER.fullmatch(o) for o in logins)):
            env.problem(f"{ADAPTERS} adapter {name!r} names no valid owner after '@'")
        elif name in adapters:
            env.problem(f"{ADAPTERS} names adapter {name!r} twice")
        else:
            adapters[name] = path
            if at:
                owners[name] = logins
    return adapters, owners
