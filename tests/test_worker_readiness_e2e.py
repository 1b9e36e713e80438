"""A worker is ready or says why (issue 13, item 4), with real ``reviewbot worker``
processes: its job process loads the model at start and the worker consumes jobs only
then; a model that cannot load stops it with exit code 3 and the reason on stderr,
at start or when a replacement job process cannot load it either.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from celery import Celery
from celery_worker import CeleryWorker
from conftest import ROOT
from github_standin import app_key_fixture  # noqa: F401
from test_supervisor import BROKER, broker, env  # noqa: F401 - shared fixtures

from reviewbot.jobs.job import Job
from reviewbot.settings.defaults import QUEUE_REVIEWS, TASK_RUN_JOB
from worker.readiness import EXIT_NOT_READY


def reviewbot_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_model_that_cannot_load_stops_the_worker_before_it_takes_a_job(
    env, broker, tmp_path: Path
) -> None:
    job = Job("auto", "octo/repo", 1, 7, "a" * 40)
    Celery(broker=BROKER).send_task(
        TASK_RUN_JOB, args=[job.to_dict()], queue=QUEUE_REVIEWS, ignore_result=True
    )
    assert broker.llen(QUEUE_REVIEWS) == 1
    env["REVIEWBOT_MODEL"] = str(tmp_path / "missing")

    result = reviewbot_worker(env)

    assert result.returncode == EXIT_NOT_READY
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"reviewbot: error: cannot load the model {tmp_path / 'missing'}: "
        f"ModelLoadError: model directory {tmp_path / 'missing'} does not exist"
    )
    assert " ready." not in result.stderr  # Celery's consumer never started
    assert "started (attempt" not in result.stderr
    assert broker.llen(QUEUE_REVIEWS) == 1  # the job waits for a worker that can run it


def test_a_model_slower_than_its_load_timeout_stops_the_worker(env, tiny_model_dir: Path) -> None:
    env.update(REVIEWBOT_MODEL=str(tiny_model_dir), REVIEWBOT_MODEL_LOAD_TIMEOUT="1")
    result = reviewbot_worker(env)
    assert result.returncode == EXIT_NOT_READY
    assert result.stderr.strip().splitlines()[-1] == (
        f"reviewbot: error: cannot load the model {tiny_model_dir}: "
        "LoadTimeout: not loaded within 1 s (REVIEWBOT_MODEL_LOAD_TIMEOUT)"
    )


def test_a_taken_metrics_port_stops_the_worker_saying_so(env, tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env.update(REVIEWBOT_MODEL=str(tiny_model_dir), REVIEWBOT_METRICS_PORT=str(port))
        result = reviewbot_worker(env)
    assert result.returncode == EXIT_NOT_READY
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"reviewbot: error: cannot serve metrics on port {port} (Address already in use)"
        )
    )


def test_a_replacement_job_process_that_cannot_load_the_model_stops_the_worker(
    env, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The job process dies (killed); its replacement finds the model gone: the worker
    stops with exit code 3 and the reason, instead of failing every job."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    env["REVIEWBOT_MODEL"] = str(model)
    worker = CeleryWorker(env, tmp_path / "worker.log")
    try:
        worker.wait_for(" ready.", 120)
        assert f"model {model} loaded in" in worker.text()
        (first,) = worker.job_processes()
        shutil.rmtree(model)
        worker.kill_job_process()
        assert worker.proc.wait(timeout=120) == EXIT_NOT_READY, worker.text()[-3000:]
        text = worker.text()
        assert f"Process 'ForkPoolWorker-1' pid:{first} exited with 'signal 9 (SIGKILL)'" in text
        assert f"the worker stops: cannot load the model {model}" in text
        assert text.strip().splitlines()[-1] == (
            f"reviewbot: error: cannot load the model {model}: "
            f"ModelLoadError: model directory {model} does not exist"
        )
    finally:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGKILL)
        worker.stop()


def test_preload_loads_the_base_and_every_adapter_once(
    tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    """What a job process loads at start: the base, the default adapter and every
    adapter a repository may pick; its jobs then load nothing."""
    from reviewbot.settings.server import Settings
    from worker.runtime import ModelRuntime

    settings = Settings(
        model=str(tiny_model_dir),
        adapter=str(tiny_adapter_dir),
        adapters={"seeded": str(tiny_adapter_dir)},
        quantize="4bit",
    )
    runtime = ModelRuntime(settings, device="cpu")
    shared = runtime.preload()
    assert runtime.base_loads == 1
    assert set(shared.adapters) == {str(tiny_adapter_dir)}
    engines = dict(shared._engines)
    assert runtime.engine("seeded") is runtime.engine(None)  # made at start, reused
    assert dict(shared._engines) == engines and runtime.base_loads == 1
