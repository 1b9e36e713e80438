"""A real worker subprocess for the end-to-end tests and bench/e2e.py: ``reviewbot worker``.

The production command itself (``python -m reviewbot.cli worker``): Celery's prefork
pool, whose parent process enforces the time limits and whose one child runs the
jobs. Its log goes to a file, which is what the callers read: the worker says when
it is ready, when each job starts and finishes, and its stage timings.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


class WorkerError(RuntimeError):
    """The worker exited, or did not log what was awaited in time (log tail included)."""


class CeleryWorker:
    """``reviewbot worker`` on the interactive and review queues (the default).

    Its metrics endpoint is off unless ``env`` sets ``REVIEWBOT_METRICS_PORT`` (tests
    run several workers at once)."""

    def __init__(self, env: dict[str, str], log: Path, name: str = "e2e") -> None:
        env = {"REVIEWBOT_METRICS_PORT": "0", **env}
        self.log = log
        self.out = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reviewbot.cli",
                "worker",
                f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def _poll(self, found, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = found(self.text())
            if result:
                return result
            if self.proc.poll() is not None:
                raise WorkerError(f"the worker exited:\n{self.text()[-3000:]}")
            time.sleep(0.05)
        raise WorkerError(
            f"{what!r} not in the worker log after {timeout:.0f}s:\n{self.text()[-3000:]}"
        )

    def wait_for(self, needle: str, timeout: float, count: int = 1) -> None:
        """Until ``needle`` appears ``count`` times in the log."""
        self._poll(lambda text: text.count(needle) >= count, timeout, needle)

    def wait_for_match(self, pattern: str, timeout: float, what: str = "") -> re.Match[str]:
        """Until the multi-line regex ``pattern`` matches the log; the match."""
        regex = re.compile(pattern, re.MULTILINE)
        return self._poll(regex.search, timeout, what or pattern)

    def job_processes(self) -> list[int]:
        """The pids of the pool's child processes (the one that runs the jobs)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []

    def kill(self) -> None:
        """SIGKILL the worker's parent process; its job process dies with it (Celery
        gives it a parent-death signal), and this waits until it has."""
        children = self.job_processes()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._wait_gone(children)

    def kill_job_process(self) -> int:
        """SIGKILL the child running the jobs, as the kernel's out-of-memory killer would;
        the parent lives on, has the job redelivered and starts a new child. Its pid."""
        (child,) = self.job_processes()
        os.kill(child, signal.SIGKILL)
        self._wait_gone([child])
        return child

    def _wait_gone(self, pids: list[int], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise WorkerError(f"worker processes {pids} outlived their SIGKILL")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.out.close()
