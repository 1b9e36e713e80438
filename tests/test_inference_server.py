"""The inference-server engine (issue 16) against a real server process.

``reviewbot model serve`` runs ``transformers serve`` (continuous batching) on the
tiny model, on CPU, on loopback; the engine of :mod:`reviewbot.model.remote` talks to
it with the ``openai`` client. Under greedy decoding its completions, and a whole
review, equal the in-process engine's on the same weights; its failures are the
errors a worker and the CLI act on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT
from inference_server import ServedModel, free_port, wait_healthy

from reviewbot.jobs.deadline import Deadline, DeadlineExceeded, job_deadline
from reviewbot.model.remote import (
    InferenceError,
    InferenceServer,
    InferenceUnavailable,
    RemoteEngine,
    served_adapter,
)
from reviewbot.model.serving import load_engine
from reviewbot.review.diffplan import plan_diff
from reviewbot.review.pipeline import critique_prompts, review_plan
from reviewbot.runners.ports import rating
from reviewbot.settings.defaults import GenerationSettings, InferenceSettings, ReviewOptions

SAMPLE_DIFF = (ROOT / "examples" / "sample.diff").read_text()
SETTINGS = GenerationSettings(max_new_tokens=24)


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    server = ServedModel(str(tiny_model_dir), tmp_path_factory.mktemp("serve") / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path):
    """The in-process engine on the same weights, in full precision as the server."""
    return load_engine(str(tiny_model_dir), quantize="none", settings=SETTINGS, device="cpu")


def remote(served: ServedModel, model_dir: Path, **kwargs) -> RemoteEngine:
    engine = load_engine(
        str(model_dir), settings=SETTINGS, inference=InferenceSettings(url=served.url, **kwargs)
    )
    assert isinstance(engine, RemoteEngine)
    return engine


def test_completions_equal_the_in_process_engine_under_greedy_decoding(
    served, local, tiny_model_dir
):
    engine = remote(served, tiny_model_dir)
    plan = plan_diff(SAMPLE_DIFF)
    prompts = critique_prompts(list(plan.units), engine.renderer, ReviewOptions())
    # the tiny model's context is 256 tokens: every prompt is cut, this one by far, and
    # both engines cut their middles by the same rule
    long_prompt = prompts[0] + "\n".join(f"x{i} = {i}" for i in range(400)) + prompts[-1]
    prompts = [*prompts, long_prompt]
    assert engine.renderer.fmt == local.renderer.fmt
    same = critique_prompts(list(plan.units), local.renderer, ReviewOptions())
    assert prompts == [*same, long_prompt]  # the same renderer's text

    expected = local.generate(prompts)
    got = engine.generate(prompts)

    assert got == expected
    assert all(got)  # the tiny model always writes something
    stats = engine.last_stats
    assert stats.prompts == len(prompts) and stats.truncated == local.last_stats.truncated > 0
    assert stats.generated_tokens == len(prompts) * SETTINGS.max_new_tokens
    assert stats.prompt_tokens == local.last_stats.prompt_tokens


def test_a_review_through_the_server_equals_the_in_process_review(served, local, tiny_model_dir):
    engine = remote(served, tiny_model_dir)
    plan = plan_diff(SAMPLE_DIFF)
    options = ReviewOptions(revise=True, summary=True)

    through_server = review_plan(plan, engine.generate, engine.renderer, options)
    in_process = review_plan(plan, local.generate, local.renderer, options)

    assert through_server == in_process
    assert through_server.comments  # the comparison compares something


def test_a_server_without_log_probabilities_leaves_findings_unrated(served, tiny_model_dir):
    """transformers serve returns no prompt log-probabilities: the engine says it
    cannot score, and a job reviews without a threshold rather than dropping all."""
    engine = remote(served, tiny_model_dir)
    assert engine.can_score is False
    score, options = rating(engine, ReviewOptions(min_confidence=0.9))
    assert score is None and options.min_confidence == 0
    with pytest.raises(InferenceError, match="no prompt log-probabilities"):
        engine.score(["a prompt"], ["a completion"])


def test_an_unknown_served_model_name_is_a_clear_error_naming_the_setting(served, tiny_model_dir):
    with pytest.raises(InferenceError) as e:
        remote(served, tiny_model_dir, model="team-lora")
    message = str(e.value)
    assert "REVIEWBOT_INFERENCE_MODEL" in message and "'team-lora'" in message
    assert str(tiny_model_dir) in message  # what the server does serve

    # the same name reaching the server in a request (served later under another name)
    server = InferenceServer(InferenceSettings(url=served.url), str(tiny_model_dir), SETTINGS)
    with pytest.raises(InferenceError, match="REVIEWBOT_INFERENCE_MODEL"):
        server.engine("team-lora").generate(["def f(): pass"])


def test_the_cli_reviews_through_the_server_and_explains_an_unknown_model(
    served, tiny_model_dir, local
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env["HF_HUB_OFFLINE"] = "1"
    base = [sys.executable, "-m", "reviewbot.cli", "review", str(ROOT / "examples" / "sample.diff")]
    base += ["--model", str(tiny_model_dir), "--max-new-tokens", "24", "--format", "json"]
    base += ["--inference-url", served.url, "--min-confidence", "0.5"]
    ok = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert '"comments"' in ok.stdout
    assert "findings are not rated" in ok.stderr  # said, not silent

    bad = subprocess.run(
        [*base, "--inference-model", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    assert "does not serve a model named 'nope'" in bad.stderr
    assert "REVIEWBOT_INFERENCE_MODEL (--inference-model)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_server_that_does_not_answer_is_a_transient_error(tiny_model_dir):
    port = free_port()  # nothing listens there
    server = InferenceServer(
        InferenceSettings(url=f"http://127.0.0.1:{port}/v1", model="m", retries=0),
        str(tiny_model_dir),
        SETTINGS,
    )
    with pytest.raises(InferenceUnavailable, match="did not answer") as e:
        server.engine().generate(["def f(): pass"])
    assert e.value.reason == "model-server"
    # past the job's deadline it is the deadline that is reported
    with job_deadline(Deadline(0.01)) as d:
        while not d.expired():
            pass
        with pytest.raises(DeadlineExceeded):
            server.engine().generate(["def f(): pass"])


def test_adapters_are_served_names_with_a_server():
    assert served_adapter(None) is None
    assert served_adapter("served:team-lora") == "team-lora"
    with pytest.raises(OSError, match="served:NAME"):
        served_adapter("/adapters/team")
    with pytest.raises(OSError, match="names no served model"):
        served_adapter("served: ")


def test_model_serve_runs_transformers_serve_with_continuous_batching(tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    out = subprocess.run(
        [
            *(sys.executable, "-m", "reviewbot.cli", "model", "serve"),
            *("--model", str(tiny_model_dir), "--port", "8011", "--device", "cpu"),
            *("--print-command", "--", "--cb-num-blocks", "64"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    argv = out.stdout.split()
    assert argv[1:5] == ["-m", "transformers.cli.transformers", "serve", str(tiny_model_dir)]
    assert "--continuous-batching" in argv and "--quantization" not in argv  # CPU: no NF4
    # on CPU the KV cache takes a small share of the RAM, not transformers' 60 %
    assert argv[argv.index("--cb-max-memory-percent") + 1] == "0.05"
    assert argv[argv.index("--port") + 1] == "8011"
    assert argv[-2:] == ["--cb-num-blocks", "64"]


@pytest.mark.skipif(
    shutil.which("llama-server") is None,
    reason="llama-server is not on PATH: the llama.cpp backend test did not run",
)
def test_a_review_through_llama_server(tmp_path, tiny_model_dir):
    """llama.cpp's server on the demo model's GGUF file, when the binary is here."""
    from reviewbot.model.demo import find_gguf

    port = free_port()
    log = open(tmp_path / "llama.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        ["llama-server", "-m", str(find_gguf()), "--port", str(port), "-c", "2048"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, 120, tmp_path / "llama.log")
        engine = load_engine(
            None,
            settings=GenerationSettings(max_new_tokens=48),
            inference=InferenceSettings(url=f"http://127.0.0.1:{port}/v1"),
        )
        plan = plan_diff(SAMPLE_DIFF)
        options = replace(ReviewOptions(), min_confidence=0.0)
        score, options = rating(engine, options)
        review = review_plan(plan, engine.generate, engine.renderer, options, score=score)
        assert len(review.units) == len(plan.units)
        assert engine.last_stats.generated_tokens > 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_doctor_checks_the_inference_server(served, tiny_model_dir):
    from reviewbot.doctor.probes import model_checks
    from reviewbot.settings.server import Settings

    env = {"REVIEWBOT_MODEL": str(tiny_model_dir), "REVIEWBOT_INFERENCE_URL": served.url}
    model, server = model_checks(Settings.from_env(env))
    assert model.ok and server.ok, server
    assert server.detail == (
        f"{served.url} serves {tiny_model_dir}; context 256 tokens; "
        "returns no log-probabilities: findings go unrated"
    )
    bad = Settings.from_env({**env, "REVIEWBOT_ADAPTERS": "team=served:team-lora"})
    (_, server) = model_checks(bad)
    assert not server.ok and "'team-lora'" in server.detail
    down = Settings.from_env(
        {**env, "REVIEWBOT_INFERENCE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    )
    (_, server) = model_checks(down)
    assert not server.ok and "did not answer" in server.detail
    assert "reviewbot model serve" in server.fix


def test_finetune_eval_generates_through_the_server(
    served, tiny_model_dir, tmp_path, capsys: pytest.CaptureFixture[str]
):
    """`finetune eval --inference-url`: the same generation metrics as in-process (greedy,
    full precision on both sides), and no loss (the weights are on the server)."""
    import json

    from reviewbot.cli import main

    data = ROOT / "tests" / "data" / "review-comments.sample.jsonl"
    argv = ["finetune", "eval", "--model", str(tiny_model_dir), "--device", "cpu"]
    argv += ["--data", str(data), "--limit", "4", "--max-new-tokens", "8"]
    argv += ["--revise-max-new-tokens", "8", "--quantize", "none"]
    assert main([*argv, "--inference-url", served.url]) == 0
    remote_metrics = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    local_metrics = json.loads(capsys.readouterr().out)
    assert remote_metrics["device"] == served.url and remote_metrics.get("loss") is None
    assert local_metrics["loss"]["tokens"] > 0
    assert remote_metrics["critique"] == local_metrics["critique"]
    assert remote_metrics["anchoring"] == local_metrics["anchoring"]
    assert remote_metrics["timing"]["generated_tokens"] > 0
    assert main([*argv, "--inference-url", served.url, "--loss-only"]) == 2
