"""``reviewbot worker --gpus``: the restart policy (pure), and the real supervisor with
real worker processes (no GPU needed: ``--gpus 0,1`` only sets CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from conftest import E2E_BROKER_DB, ROOT, redis_url
from github_standin import APP_ID, app_key_fixture  # noqa: F401

from worker.readiness import EXIT_NOT_READY
from worker.supervisor import (
    GiveUp,
    Restart,
    RestartPolicy,
    Run,
    gpu_workers,
    next_step,
    node_name,
    parse_gpus,
)

POLICY = RestartPolicy(delay=1.0, max_delay=8.0, give_up_after=3, stable_after=60.0)
BROKER = redis_url(E2E_BROKER_DB)

# --------------------------------------------------------------------------- the policy


def test_a_worker_that_exited_0_stays_stopped() -> None:
    assert next_step([Run(0, 5.0)], POLICY) is None
    assert next_step([Run(1, 1.0), Run(0, 3.0)], POLICY) is None


def test_a_crash_after_a_long_run_restarts_after_the_first_delay() -> None:
    assert next_step([Run(-9, 3600.0)], POLICY) == Restart(1.0)
    # earlier immediate failures do not count past a run that lasted
    runs = [Run(EXIT_NOT_READY, 1.0), Run(1, 2.0), Run(1, 500.0), Run(-9, 900.0)]
    assert next_step(runs, POLICY) == Restart(1.0)


def test_immediate_failures_back_off_then_give_up() -> None:
    runs = [Run(1, 2.0)]
    assert next_step(runs, POLICY) == Restart(1.0)
    runs.append(Run(1, 2.0))
    assert next_step(runs, POLICY) == Restart(2.0)
    runs.append(Run(1, 2.0))
    step = next_step(runs, POLICY)
    assert isinstance(step, GiveUp)
    assert "3 immediate failures in a row" in step.reason
    assert "exit code 1 after 2.0 s" in step.reason


def test_a_model_that_cannot_load_is_an_immediate_failure_however_long_it_took() -> None:
    slow = Run(EXIT_NOT_READY, 1200.0)  # 20 minutes of loading, then it failed
    assert POLICY.immediate(slow)
    assert not POLICY.immediate(Run(1, 1200.0))
    assert not POLICY.immediate(Run(0, 1.0))
    assert isinstance(next_step([slow, slow, slow], POLICY), GiveUp)


def test_the_backoff_is_capped_and_a_signal_is_named() -> None:
    policy = RestartPolicy(delay=1.0, max_delay=3.0, give_up_after=10, stable_after=60.0)
    runs = [Run(-9, 1.0)] * 5
    assert next_step(runs, policy) == Restart(3.0)
    step = next_step([Run(-9, 1.0)] * 10, policy)
    assert isinstance(step, GiveUp) and "killed by SIGKILL after 1.0 s" in step.reason
    with pytest.raises(ValueError):
        next_step([], policy)


def test_gpu_ids_node_names_and_ports() -> None:
    assert parse_gpus("0,1,3") == ["0", "1", "3"]
    assert parse_gpus(" 2 ") == ["2"]
    assert parse_gpus("GPU-8a6e3b7c-1f2e") == ["GPU-8a6e3b7c-1f2e"]
    for bad in ("", "0,,1", "0;1", "0,0"):
        with pytest.raises(ValueError):
            parse_gpus(bad)
    assert node_name(None, "1") == "reviewbot-gpu1@%h"
    assert node_name("review@box", "3") == "review-gpu3@box"
    assert node_name("review", "0") == "review-gpu0"
    specs = gpu_workers(
        ["0", "3"], ["reviewbot", "worker"], None, 9464, {"PROMETHEUS_MULTIPROC_DIR": "/x"}
    )
    assert [s.name for s in specs] == ["gpu 0", "gpu 3"]
    assert [s.argv[-1] for s in specs] == [
        "--hostname=reviewbot-gpu0@%h",
        "--hostname=reviewbot-gpu3@%h",
    ]
    assert [(s.env["CUDA_VISIBLE_DEVICES"], s.env["REVIEWBOT_METRICS_PORT"]) for s in specs] == [
        ("0", "9464"),
        ("3", "9465"),
    ]
    assert all("PROMETHEUS_MULTIPROC_DIR" not in s.env for s in specs)
    off = gpu_workers(["0", "1"], ["w"], None, 0, {})
    assert [s.env["REVIEWBOT_METRICS_PORT"] for s in off] == ["0", "0"]
    with pytest.raises(ValueError):
        gpu_workers(["0", "1"], ["w"], None, 65535, {})


# --------------------------------------------------------------------------- real processes


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            socks = []
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no consecutive free ports")


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    yield r
    r.flushdb()


@pytest.fixture
def env(app_key: str, broker: redis.Redis) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(
        REVIEWBOT_REDIS_URL=BROKER,
        REVIEWBOT_APP_ID=str(APP_ID),
        REVIEWBOT_PRIVATE_KEY=app_key,
        REVIEWBOT_GITHUB_API_URL="http://127.0.0.1:1",
        REVIEWBOT_QUANTIZE="4bit",
        REVIEWBOT_METRICS_PORT="0",
        HF_HUB_OFFLINE="1",
    )
    return env


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-4000:] if log else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def started_pids(text: str, gpu: str) -> list[int]:
    return [int(p) for p in re.findall(rf"worker gpu {gpu} started \(pid (\d+)", text)]


def test_bad_model_each_gpu_worker_fails_is_retried_then_given_up(env, tmp_path) -> None:
    """A model that cannot load: every start fails at once, with the reason; the
    supervisor restarts each worker with backoff, gives up after three failures in a
    row, and exits non-zero saying why."""
    env["REVIEWBOT_MODEL"] = str(tmp_path / "no-such-model")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "reviewbot.cli", "worker", "--gpus", "0,1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    err = result.stderr
    assert result.returncode == EXIT_NOT_READY, err[-4000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("reviewbot: error: worker gpu "), last
    assert "gave up: 3 immediate failures in a row" in last
    assert "exit code 3" in last
    # each child said why it could not start, and was started (at least) 3 times
    assert f"cannot load the model {tmp_path / 'no-such-model'}" in err
    assert "does not exist" in err
    gave_up = re.search(r"worker gpu (\d) gave up", last)
    assert gave_up is not None
    assert len(started_pids(err, gave_up.group(1))) == 3
    assert "restarting it in 1.0 s" in err and "restarting it in 2.0 s" in err
    assert elapsed > 3.0  # the backoff was waited for


def test_good_model_both_gpu_workers_become_ready_crash_is_restarted_sigterm_stops(
    env, tiny_model_dir: Path, tmp_path: Path
) -> None:
    port = free_ports(2)
    env.update(REVIEWBOT_MODEL=str(tiny_model_dir), REVIEWBOT_METRICS_PORT=str(port))
    log = tmp_path / "supervisor.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reviewbot.cli", "worker", "--gpus", "0,1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready(gpu: str, count: int = 1) -> bool:
            return len(re.findall(rf"reviewbot-gpu{gpu}@\S+ ready\.", log.read_text())) >= count

        wait_until(lambda: ready("0") and ready("1"), 180, "both workers ready", log)
        text = log.read_text()
        pids = {gpu: started_pids(text, gpu)[0] for gpu in ("0", "1")}
        for gpu, pid in pids.items():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"CUDA_VISIBLE_DEVICES={gpu}".encode() in environ
            assert f"REVIEWBOT_METRICS_PORT={port + int(gpu)}".encode() in environ
            # the worker's job process loaded the model there
            assert f"(CUDA_VISIBLE_DEVICES={gpu})" in text
            metrics = requests.get(f"http://127.0.0.1:{port + int(gpu)}/metrics", timeout=10)
            assert "reviewbot_model_load_seconds_count 1.0" in metrics.text

        # a crash (SIGKILL of gpu 1's worker): restarted, and ready again
        os.kill(pids["1"], signal.SIGKILL)
        wait_until(lambda: ready("1", 2), 180, "gpu 1's worker ready again", log)
        restarted = started_pids(log.read_text(), "1")
        assert len(restarted) == 2 and _alive(restarted[1])
        assert "worker gpu 1 killed by SIGKILL" in log.read_text()
        assert len(started_pids(log.read_text(), "0")) == 1

        # SIGTERM: forwarded, every worker stops, the supervisor exits 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        text = log.read_text()
        assert "SIGTERM: passed on to the workers" in text
        assert "worker gpu 0 stopped (exit code 0" in text
        assert "worker gpu 1 stopped (exit code 0" in text
        assert not _alive(pids["0"]) and not _alive(restarted[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
