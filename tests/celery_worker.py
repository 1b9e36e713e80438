"""A real ``celery worker`` subprocess (solo pool) for the end-to-end tests and bench/e2e.py.

Its log goes to a file, which is what the callers read: the worker says when it is
ready, when each job starts and finishes, and its stage timings.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELERY = Path(sys.executable).parent / "celery"


class WorkerError(RuntimeError):
    """The worker exited, or did not log what was awaited in time (log tail included)."""


class CeleryWorker:
    """``celery -A worker.app worker --pool=solo`` on the interactive and review queues."""

    def __init__(self, env: dict[str, str], log: Path, name: str = "e2e") -> None:
        self.log = log
        self.out = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "worker.app",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "-Q",
                "interactive,reviews",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
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

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.out.close()
