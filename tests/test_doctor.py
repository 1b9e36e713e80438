"""``reviewbot doctor``: the memory arithmetic, the report, and the real command against
real Redis, the GitHub stand-in (GET /app with the App's JWT) and a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEDUPE_DB, ROOT, redis_url
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401

from reviewbot.doctor.estimate import ModelShape, memory_need
from reviewbot.doctor.report import Check, healthy, render
from reviewbot.settings.defaults import NF4_BYTES_PER_WEIGHT

# --------------------------------------------------------------------------- pure parts

#: Qwen2.5-7B's shape: 6.53 B parameters in linear layers but the head, 1.09 B else
#: (embeddings 152064 × 3584 and the untied head), 28 layers, 4 KV heads of 128.
QWEN_7B = ModelShape(
    linear=6_525_000_000, other=1_090_000_000, layers=28, kv_heads=4, head_dim=128, context=32768
)


def test_4bit_weights_are_nf4_linears_plus_the_rest_in_the_compute_dtype() -> None:
    need = memory_need(QWEN_7B, four_bit=True, dtype_bytes=2, batch=8)
    assert need.weights == round(6_525_000_000 * NF4_BYTES_PER_WEIGHT) + 1_090_000_000 * 2
    # keys and values × layers × KV heads × head dim × context × batch × 2 bytes
    assert need.kv_cache == 2 * 28 * 4 * 128 * 32768 * 8 * 2 == 15_032_385_536
    assert need.total == need.weights + need.kv_cache
    assert need.describe().startswith("~20.6 GB: weights 5.5 GB (4-bit NF4) + KV cache 15.0 GB")


def test_full_precision_counts_every_parameter_at_the_dtype() -> None:
    bf16 = memory_need(QWEN_7B, four_bit=False, dtype_bytes=2, batch=1)
    assert bf16.weights == 7_615_000_000 * 2 and bf16.kv_cache == 2 * 28 * 4 * 128 * 32768 * 2
    assert "(bf16)" in bf16.describe() and "batch 1 × 32768 tokens" in bf16.describe()
    fp32 = memory_need(QWEN_7B, four_bit=False, dtype_bytes=4, batch=1)
    assert fp32.weights == 2 * bf16.weights and "(fp32)" in fp32.describe()


def test_the_report_says_each_check_and_the_fix_of_a_failure() -> None:
    checks = [Check("Redis", True, "answers"), Check("model", False, "gone", "set REVIEWBOT_MODEL")]
    assert render(checks).split("\n") == [
        "✓ Redis: answers",
        "✗ model: gone",
        "    fix: set REVIEWBOT_MODEL",
        "1 of 2 checks passed; 1 failed",
    ]
    assert not healthy(checks) and healthy(checks[:1])


# --------------------------------------------------------------------------- the command


def doctor(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", "doctor", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def lines(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """Check name → its line, from the report on stdout."""
    out = {}
    for line in proc.stdout.splitlines():
        if line[:2] in ("✓ ", "✗ "):
            out[line[2:].split(":", 1)[0]] = line
    return out


@pytest.fixture
def adapters(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """Two adapter directories: one trained on the tiny model (by its recorded base
    signature), one on another shape."""
    from transformers import AutoConfig

    from reviewbot.model.adapters import base_signature

    signature = base_signature(AutoConfig.from_pretrained(tiny_model_dir))
    made = []
    for name, base in (("fits", signature), ("other", {**signature, "hidden_size": 4096})):
        d = tmp_path / name
        d.mkdir()
        (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
        other = {**base, "fingerprint": "0" * 16} if name == "other" else base
        meta = {"base_model": "some-base", "base": other}
        (d / "reviewbot.json").write_text(json.dumps(meta))
        made.append(d)
    return made[0], made[1]


@pytest.fixture
def env(
    github: GitHubStandIn, app_key: str, tiny_model_dir: Path, adapters, tmp_path: Path
) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    return {
        **base,
        "REVIEWBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'findings.sqlite3'}",
        "REVIEWBOT_WEBHOOK_SECRET": "s3cret-value",
        "REVIEWBOT_REDIS_URL": redis_url(DEDUPE_DB),
        "REVIEWBOT_APP_ID": str(APP_ID),
        "REVIEWBOT_PRIVATE_KEY": app_key,
        "REVIEWBOT_GITHUB_API_URL": github.url,
        "REVIEWBOT_MODEL": str(tiny_model_dir),
        "REVIEWBOT_ADAPTERS": f"team={adapters[0]}",
        "HF_HUB_OFFLINE": "1",
    }


def test_a_healthy_deployment_passes_every_check(env: dict[str, str], app_key: str) -> None:
    proc = doctor(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = lines(proc)
    assert set(found) == {
        "settings",
        "webhook secret",
        "Redis",
        "findings database",
        "GitHub App",
        "bot login",
        "model",
        "memory",
        "bitsandbytes",
        "adapter team",
    }
    assert all(line.startswith("✓") for line in found.values())
    assert "reviewbot[bot] (learned from GET /app)" in found["bot login"]
    assert "KV cache" in found["memory"] and "GB free" in found["memory"]
    assert found["findings database"].endswith("findings.sqlite3 (schema up to date)")
    assert proc.stdout.rstrip().endswith("10 of 10 checks passed")
    # secrets never appear
    assert "s3cret-value" not in proc.stdout + proc.stderr
    assert app_key.split("\n")[1] not in proc.stdout + proc.stderr


def test_each_problem_is_a_cross_with_its_fix_and_a_failing_exit_code(
    env: dict[str, str], adapters
) -> None:
    broken = {
        **env,
        "REVIEWBOT_REDIS_URL": "redis://127.0.0.1:1/0",
        "REVIEWBOT_DATABASE_URL": "postgresql://team:pg-sekrit@127.0.0.1:1/reviewbot",
        "REVIEWBOT_BOT_LOGIN": "someone-else[bot]",
        "REVIEWBOT_ADAPTERS": f"team={adapters[0]},old={adapters[1]}",
    }
    del broken["REVIEWBOT_WEBHOOK_SECRET"]
    proc = doctor(broken)
    assert proc.returncode == 1
    found = lines(proc)
    assert found["webhook secret"].startswith("✗")
    assert found["Redis"].startswith("✗ Redis: redis://127.0.0.1:1/0 does not answer")
    assert found["findings database"].startswith("✗") and "127.0.0.1:1" in proc.stdout
    assert "pg-sekrit" not in proc.stdout + proc.stderr
    assert found["bot login"].startswith("✗") and "reviewbot[bot]" in found["bot login"]
    assert found["adapter old"].startswith("✗") and "hidden_size" in found["adapter old"]
    assert found["adapter team"].startswith("✓")
    assert "fix: unset REVIEWBOT_BOT_LOGIN (workers learn it) or set it to reviewbot[bot]" in (
        proc.stdout
    )
    assert "fix: start Redis" in proc.stdout
    assert proc.stdout.rstrip().endswith("6 of 11 checks passed; 5 failed")


def test_a_wrong_key_a_missing_model_and_bad_settings_are_explained(
    env: dict[str, str], tmp_path: Path
) -> None:
    from github_standin import make_app_key

    proc = doctor(
        {
            **env,
            "REVIEWBOT_PRIVATE_KEY": make_app_key(),
            "REVIEWBOT_MODEL": str(tmp_path / "no-model"),
        }
    )
    assert proc.returncode == 1
    found = lines(proc)
    assert found["GitHub App"].startswith(f"✗ GitHub App: App {APP_ID} cannot authenticate")
    assert "bot login" not in found
    assert found["model"].startswith("✗") and "does not exist" in found["model"]

    bad = doctor({**env, "REVIEWBOT_QUANTIZE": "8bit"})
    assert bad.returncode == 1 and lines(bad)["settings"].startswith("✗ settings:")
    assert "REVIEWBOT_QUANTIZE" in bad.stdout


def test_doctor_reads_the_env_file_and_the_environment_wins(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        f"REVIEWBOT_WEBHOOK_SECRET=from-file\nREVIEWBOT_REDIS_URL={redis_url(DEDUPE_DB)}\n"
    )
    without = {k: v for k, v in env.items() if k not in ("REVIEWBOT_WEBHOOK_SECRET",)}
    without["REVIEWBOT_REDIS_URL"] = "redis://127.0.0.1:1/0"  # the environment wins
    proc = doctor(without, cwd=tmp_path)
    found = lines(proc)
    assert found["webhook secret"].startswith("✓")  # from .env
    assert found["Redis"].startswith("✗")  # the environment's, not the file's
    named = doctor(without, "--help", cwd=ROOT)
    assert named.returncode == 0
    missing = subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", "--env-file", "nope.env", "doctor"],
        env=without,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "--env-file nope.env: no such file" in missing.stderr


@pytest.mark.parametrize("tied", [True, False])
def test_the_shape_counts_a_models_parameters_as_the_real_model_has_them(tied: bool) -> None:
    from transformers import AutoModelForCausalLM, Qwen2Config

    from reviewbot.doctor.probes import model_shape

    config = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=tied,
        max_position_embeddings=512,
    )
    real = AutoModelForCausalLM.from_config(config)
    shape = model_shape(config, fallback_context=2048)
    assert shape.parameters == sum(p.numel() for p in real.parameters())
    head = 0 if tied else 1000 * 64
    assert shape.other == 1000 * 64 + head + sum(
        p.numel() for n, p in real.named_parameters() if "norm" in n or n.endswith(".bias")
    )
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.context) == (2, 2, 16, 512)
