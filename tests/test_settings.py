"""Settings from REVIEWBOT_* variables: defaults, validation, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewbot.settings.defaults import (
    DEFAULT_GITHUB_API_URL,
    DEFAULT_REDIS_URL,
    GenerationSettings,
)
from reviewbot.settings.repo import RepoConfigError
from reviewbot.settings.server import Settings, SettingsError, redact_url

SECRET = "hunter2-webhook-secret-value"
OLD_SECRET = "previous-secret-value"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEAsupersecretkeymaterialAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "-----END RSA PRIVATE KEY-----\n"
)
KEY_MATERIAL = "supersecretkeymaterial"


def errors(environ: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(environ)
    return info.value


def test_defaults_with_an_empty_environment() -> None:
    s = Settings.from_env({})
    assert s.webhook_secrets == ()
    assert s.app_id is None and s.private_key is None
    assert s.github_api_url == DEFAULT_GITHUB_API_URL == "https://api.github.com"
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert s.model is None and s.adapter is None and s.adapters == {}
    assert s.prompt_format is None
    assert s.quantize == "auto"
    assert s.max_new_tokens == GenerationSettings().max_new_tokens
    assert s.bot_login is None and s.review_drafts is False


def test_full_environment() -> None:
    s = Settings.from_env(
        {
            "REVIEWBOT_WEBHOOK_SECRET": SECRET,
            "REVIEWBOT_APP_ID": "12345",
            "REVIEWBOT_PRIVATE_KEY": PEM,
            "REVIEWBOT_GITHUB_API_URL": "https://ghe.example.com/api/v3/",
            "REVIEWBOT_REDIS_URL": "redis://redis.internal:6380/2",
            "REVIEWBOT_MODEL": "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            "REVIEWBOT_ADAPTER": "/srv/adapters/default",
            "REVIEWBOT_ADAPTERS": "python=/srv/a/py, go = /srv/a/go",
            "REVIEWBOT_PROMPT_FORMAT": "alpaca-dialogue",
            "REVIEWBOT_QUANTIZE": "4bit",
            "REVIEWBOT_MAX_NEW_TOKENS": "128",
            "REVIEWBOT_BOT_LOGIN": "reviewbot[bot]",
            "REVIEWBOT_REVIEW_DRAFTS": "true",
        }
    )
    assert s.webhook_secrets == (SECRET,)
    assert s.app_id == 12345
    assert s.private_key == PEM
    assert s.github_api_url == "https://ghe.example.com/api/v3"
    assert s.redis_url == "redis://redis.internal:6380/2"
    assert s.model == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert s.adapter == "/srv/adapters/default"
    assert s.adapters == {"python": "/srv/a/py", "go": "/srv/a/go"}
    assert s.prompt_format == "alpaca-dialogue"
    assert s.quantize == "4bit"
    assert s.max_new_tokens == 128
    assert s.bot_login == "reviewbot[bot]"
    assert s.review_drafts is True


def test_comma_separated_secrets_for_rotation() -> None:
    s = Settings.from_env({"REVIEWBOT_WEBHOOK_SECRET": f"{SECRET}, {OLD_SECRET}"})
    assert s.webhook_secrets == (SECRET, OLD_SECRET)


def test_empty_secret_entry_is_an_error_without_the_secret() -> None:
    err = errors({"REVIEWBOT_WEBHOOK_SECRET": f"{SECRET},,{OLD_SECRET}"})
    assert "REVIEWBOT_WEBHOOK_SECRET" in str(err)
    assert SECRET not in str(err) and OLD_SECRET not in str(err)


def test_escaped_single_line_private_key() -> None:
    s = Settings.from_env({"REVIEWBOT_PRIVATE_KEY": PEM.replace("\n", "\\n")})
    assert s.private_key == PEM


def test_private_key_from_file(tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text(PEM)
    s = Settings.from_env({"REVIEWBOT_PRIVATE_KEY_PATH": str(key)})
    assert s.private_key == PEM
    assert s.private_key_path == key


def test_private_key_file_missing(tmp_path: Path) -> None:
    err = errors({"REVIEWBOT_PRIVATE_KEY_PATH": str(tmp_path / "nope.pem")})
    assert err.problems == [
        f"REVIEWBOT_PRIVATE_KEY_PATH: file '{tmp_path / 'nope.pem'}' does not exist"
    ]


def test_private_key_file_unreadable(tmp_path: Path) -> None:
    err = errors({"REVIEWBOT_PRIVATE_KEY_PATH": str(tmp_path)})  # a directory
    assert len(err.problems) == 1
    assert err.problems[0].startswith("REVIEWBOT_PRIVATE_KEY_PATH: cannot read")


def test_private_key_file_not_pem_does_not_echo_content(tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text(KEY_MATERIAL)
    err = errors({"REVIEWBOT_PRIVATE_KEY_PATH": str(key)})
    assert "REVIEWBOT_PRIVATE_KEY_PATH is not a PEM private key" in str(err)
    assert KEY_MATERIAL not in str(err)


def test_private_key_not_pem_does_not_echo_it() -> None:
    err = errors({"REVIEWBOT_PRIVATE_KEY": KEY_MATERIAL})
    assert err.problems == [
        "REVIEWBOT_PRIVATE_KEY is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)"
    ]


def test_private_key_and_path_together_are_an_error(tmp_path: Path) -> None:
    err = errors({"REVIEWBOT_PRIVATE_KEY": PEM, "REVIEWBOT_PRIVATE_KEY_PATH": str(tmp_path)})
    assert "REVIEWBOT_PRIVATE_KEY and REVIEWBOT_PRIVATE_KEY_PATH" in str(err)
    assert KEY_MATERIAL not in str(err)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REVIEWBOT_APP_ID", "abc"),
        ("REVIEWBOT_APP_ID", "-3"),
        ("REVIEWBOT_GITHUB_API_URL", "ftp://github.example.com"),
        ("REVIEWBOT_GITHUB_API_URL", "api.github.com"),
        ("REVIEWBOT_REDIS_URL", "http://127.0.0.1:6379"),
        ("REVIEWBOT_REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("REVIEWBOT_PROMPT_FORMAT", "vicuna"),
        ("REVIEWBOT_QUANTIZE", "8bit"),
        ("REVIEWBOT_MAX_NEW_TOKENS", "0"),
        ("REVIEWBOT_MAX_NEW_TOKENS", "many"),
        ("REVIEWBOT_ADAPTERS", "python"),
        ("REVIEWBOT_ADAPTERS", "python=/a,python=/b"),
        ("REVIEWBOT_ADAPTERS", "team@=/a"),
        ("REVIEWBOT_ADAPTERS", "team@bad owner=/a"),
        ("REVIEWBOT_GITHUB_API_URL", "http://github.example.com/api/v3"),
        ("REVIEWBOT_GITHUB_API_URL", "http://10.0.0.5/api/v3"),
        ("REVIEWBOT_INSTALLATION_MAX_JOBS", "0"),
        ("REVIEWBOT_INSTALLATION_TOKEN_BUDGET", "lots"),
        ("REVIEWBOT_REVIEW_DRAFTS", "maybe"),
    ],
)
def test_each_invalid_variable_is_named(name: str, value: str) -> None:
    err = errors({name: value})
    assert len(err.problems) == 1
    assert err.problems[0].startswith(name)


def test_all_problems_are_reported_at_once() -> None:
    err = errors(
        {
            "REVIEWBOT_APP_ID": "x",
            "REVIEWBOT_QUANTIZE": "8bit",
            "REVIEWBOT_REDIS_URL": "nope",
            "REVIEWBOT_PRIVATE_KEY": KEY_MATERIAL,
        }
    )
    named = {p.split()[0].rstrip(":") for p in err.problems}
    assert named == {
        "REVIEWBOT_APP_ID",
        "REVIEWBOT_QUANTIZE",
        "REVIEWBOT_REDIS_URL",
        "REVIEWBOT_PRIVATE_KEY",
    }


def test_redis_url_password_is_never_echoed() -> None:
    err = errors({"REVIEWBOT_REDIS_URL": "http://:redispassword@host:6379"})
    assert "redispassword" not in str(err)
    s = Settings.from_env({"REVIEWBOT_REDIS_URL": "redis://:redispassword@host:6379/0"})
    assert "redispassword" not in repr(s)
    assert "redis://:***@host:6379/0" in repr(s)


def test_repr_redacts_secrets() -> None:
    s = Settings.from_env(
        {"REVIEWBOT_WEBHOOK_SECRET": f"{SECRET},{OLD_SECRET}", "REVIEWBOT_PRIVATE_KEY": PEM}
    )
    for text in (repr(s), str(s), f"{s}"):
        assert SECRET not in text and OLD_SECRET not in text and KEY_MATERIAL not in text
        assert "webhook_secrets=<2 redacted>" in text
        assert "private_key=<redacted>" in text


def test_require_web_needs_the_webhook_secret() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"REVIEWBOT_APP_ID": "1", "REVIEWBOT_PRIVATE_KEY": PEM}).require_web()
    assert info.value.problems == ["REVIEWBOT_WEBHOOK_SECRET is required by the web server"]
    s = Settings.from_env({"REVIEWBOT_WEBHOOK_SECRET": SECRET})
    assert s.require_web() is s  # no app id / key needed by the web process


def test_require_worker_needs_app_id_and_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"REVIEWBOT_WEBHOOK_SECRET": SECRET}).require_worker()
    assert [p.split()[0] for p in info.value.problems] == [
        "REVIEWBOT_APP_ID",
        "REVIEWBOT_PRIVATE_KEY",
    ]
    s = Settings.from_env({"REVIEWBOT_APP_ID": "7", "REVIEWBOT_PRIVATE_KEY": PEM})
    assert s.require_worker() is s  # no webhook secret needed by a worker


def test_require_worker_checks_adapter_directories(tmp_path: Path) -> None:
    env = {"REVIEWBOT_APP_ID": "7", "REVIEWBOT_PRIVATE_KEY": PEM}
    ok = Settings.from_env({**env, "REVIEWBOT_ADAPTERS": f"py={tmp_path}"})
    assert ok.require_worker() is ok
    bad = Settings.from_env(
        {**env, "REVIEWBOT_ADAPTER": str(tmp_path / "x"), "REVIEWBOT_ADAPTERS": "go=/nope/go"}
    )
    with pytest.raises(SettingsError) as info:
        bad.require_worker()
    assert [p.split(":")[0] for p in info.value.problems] == [
        "REVIEWBOT_ADAPTER",
        "REVIEWBOT_ADAPTERS",
    ]


def test_blank_values_count_as_unset() -> None:
    s = Settings.from_env({"REVIEWBOT_MODEL": "  ", "REVIEWBOT_QUANTIZE": ""})
    assert s.model is None and s.quantize == "auto"


def test_visibility_timeout_is_read_and_validated() -> None:
    from reviewbot.settings.defaults import VISIBILITY_TIMEOUT

    assert Settings.from_env({}).visibility_timeout == VISIBILITY_TIMEOUT
    assert Settings.from_env({"REVIEWBOT_VISIBILITY_TIMEOUT": "30"}).visibility_timeout == 30
    assert "REVIEWBOT_VISIBILITY_TIMEOUT" in str(errors({"REVIEWBOT_VISIBILITY_TIMEOUT": "soon"}))


def test_the_github_api_url_is_https_except_on_loopback() -> None:
    for url in (
        "https://ghe.example.com/api/v3",
        "http://127.0.0.1:8080",
        "http://[::1]:9/",
        "http://localhost:1",
    ):
        assert Settings.from_env({"REVIEWBOT_GITHUB_API_URL": url}).github_api_url == url.rstrip(
            "/"
        )
    err = errors({"REVIEWBOT_GITHUB_API_URL": "http://ghe.example.com/api/v3"})
    assert "must use https" in err.problems[0]


def test_query_string_passwords_are_redacted() -> None:
    url = "redis://redis.internal:6379/0?password=hunter2&socket_timeout=5"
    s = Settings.from_env({"REVIEWBOT_REDIS_URL": url})
    assert s.redis_url == url  # used as given
    assert "hunter2" not in repr(s)
    assert redact_url(url) == "redis://redis.internal:6379/0?password=***&socket_timeout=5"
    assert redact_url("rediss://app:pw@h:6380/1?token=t0k") == "rediss://app:***@h:6380/1?token=***"
    assert redact_url("unix:///run/redis.sock?db=3") == "unix:///run/redis.sock?db=3"


def test_adapters_may_name_the_owners_allowed_to_use_them() -> None:
    s = Settings.from_env(
        {"REVIEWBOT_ADAPTERS": "team@octo-org+Acme=/srv/a/team, open=/srv/a/open"}
    )
    assert s.adapters == {"team": "/srv/a/team", "open": "/srv/a/open"}
    assert s.adapter_owners == {"team": frozenset({"octo-org", "acme"})}
    assert s.adapter_for("team", "ACME") == "/srv/a/team"
    assert s.adapter_for("open", "anyone") == "/srv/a/open"
    assert s.adapter_for(None, "anyone") is None
    with pytest.raises(RepoConfigError, match="'team' is not available to mallory") as e:
        s.adapter_for("team", "mallory")
    assert e.value.key == "adapter"


def test_installation_caps_are_read() -> None:
    s = Settings.from_env(
        {"REVIEWBOT_INSTALLATION_MAX_JOBS": "4", "REVIEWBOT_INSTALLATION_TOKEN_BUDGET": "1000"}
    )
    assert (s.installation_max_jobs, s.installation_token_budget) == (4, 1000)


def test_the_web_needs_the_apps_key_only_to_react_itself() -> None:
    web = Settings.from_env({"REVIEWBOT_WEBHOOK_SECRET": SECRET})
    assert web.require_web() is web and web.web_reactions is False
    with pytest.raises(SettingsError) as err:
        Settings.from_env(
            {"REVIEWBOT_WEBHOOK_SECRET": SECRET, "REVIEWBOT_WEB_REACTIONS": "true"}
        ).require_web()
    assert "REVIEWBOT_WEB_REACTIONS needs REVIEWBOT_APP_ID" in str(err.value)
    both = Settings.from_env(
        {
            "REVIEWBOT_WEBHOOK_SECRET": SECRET,
            "REVIEWBOT_WEB_REACTIONS": "true",
            "REVIEWBOT_APP_ID": "7",
            "REVIEWBOT_PRIVATE_KEY": PEM,
        }
    )
    assert both.require_web().web_reactions is True


def test_an_inference_server_is_read_and_its_key_never_shown() -> None:
    s = Settings.from_env(
        {
            "REVIEWBOT_INFERENCE_URL": "http://vllm.internal:8000/v1/",
            "REVIEWBOT_INFERENCE_MODEL": "Qwen/Qwen2.5-Coder-7B-Instruct",
            "REVIEWBOT_INFERENCE_API_KEY": "sk-inference-secret-123",
            "REVIEWBOT_INFERENCE_CONCURRENCY": "16",
            "REVIEWBOT_INFERENCE_TIMEOUT": "60",
            "REVIEWBOT_INFERENCE_CONTEXT": "8192",
        }
    )
    assert s.inference is not None
    assert s.inference.url == "http://vllm.internal:8000/v1"  # http: servers live inside
    assert s.inference.model == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert (s.inference.concurrency, s.inference.timeout, s.inference.context_length) == (
        16,
        60,
        8192,
    )
    assert "sk-inference-secret-123" in s.secrets()  # masked by the log formatters
    assert "sk-inference-secret-123" not in repr(s) and "'api_key': <redacted>" in repr(s)
    assert Settings.from_env({}).inference is None


def test_inference_variables_are_validated() -> None:
    err = errors(
        {
            "REVIEWBOT_INFERENCE_URL": "vllm:8000",
            "REVIEWBOT_INFERENCE_CONCURRENCY": "0",
        }
    )
    assert err.problems == [
        "REVIEWBOT_INFERENCE_URL must be an http(s) URL such as http://127.0.0.1:8000/v1"
    ]
    err = errors({"REVIEWBOT_INFERENCE_MODEL": "m"})
    assert err.problems == ["REVIEWBOT_INFERENCE_MODEL needs REVIEWBOT_INFERENCE_URL"]
    err = errors({"REVIEWBOT_INFERENCE_URL": "http://h:1/v1", "REVIEWBOT_INFERENCE_TIMEOUT": "x"})
    assert err.problems == ["REVIEWBOT_INFERENCE_TIMEOUT must be a positive integer (got 'x')"]


def test_with_an_inference_server_adapters_are_served_names(tmp_path: Path) -> None:
    env = {"REVIEWBOT_APP_ID": "7", "REVIEWBOT_PRIVATE_KEY": PEM}
    served = {**env, "REVIEWBOT_ADAPTERS": "team=served:team-lora", "REVIEWBOT_ADAPTER": "served:x"}
    ok = Settings.from_env({**served, "REVIEWBOT_INFERENCE_URL": "http://127.0.0.1:8000/v1"})
    assert ok.require_worker() is ok
    assert ok.adapter_for("team", "anyone") == "served:team-lora"
    with pytest.raises(SettingsError) as info:  # no server to serve them
        Settings.from_env(served).require_worker()
    assert info.value.problems == [
        "REVIEWBOT_ADAPTER: the adapter 'served:x' is served by an inference server, "
        "but REVIEWBOT_INFERENCE_URL is not set",
        "REVIEWBOT_ADAPTERS: adapter 'team' 'served:team-lora' is served by an inference "
        "server, but REVIEWBOT_INFERENCE_URL is not set",
    ]
    with pytest.raises(SettingsError) as info:  # a directory the server cannot load
        Settings.from_env(
            {
                **env,
                "REVIEWBOT_ADAPTERS": f"py={tmp_path}",
                "REVIEWBOT_INFERENCE_URL": "http://127.0.0.1:8000/v1",
            }
        ).require_worker()
    assert info.value.problems == [
        f"REVIEWBOT_ADAPTERS: adapter 'py' {str(tmp_path)!r} must be the inference server's "
        "name for it (served:NAME) when REVIEWBOT_INFERENCE_URL is set"
    ]
