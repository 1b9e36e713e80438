"""A real inference server for the tests and bench/serving.py: ``reviewbot model serve``.

The production command (``python -m reviewbot.cli model serve``), which runs
``transformers serve`` pinned to the model, with continuous batching, on loopback.
Its log goes to a file; the callers wait on its ``/health`` and read the log (the
server logs each request it receives).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    """The server exited, or was not healthy in time (log tail included)."""


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until ``GET url`` answers 200; ServerError when ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"the server exited:\n{_tail(log)}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ServerError(f"the server was not healthy after {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


class ServedModel:
    """``reviewbot model serve --model MODEL`` on a loopback port; ``url`` is its API root."""

    def __init__(
        self, model: str, log: Path, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.model = model
        self.log = log
        self.port = port or free_port()
        self.extra = extra
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out = None

    def start(self, timeout: float = 180) -> ServedModel:
        """Start the server and wait until ``/health`` answers 200."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
        env["HF_HUB_OFFLINE"] = "1"
        self._out = open(self.log, "a")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "reviewbot.cli", "model", "serve", "--model", self.model]
        argv += ["--port", str(self.port), "--device", "cpu", "--kv-cache-memory", "0.05"]
        argv += self.extra
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )
        wait_healthy(self.url.removesuffix("/v1") + "/health", self.proc, timeout, self.log)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, needle: str, timeout: float, count: int = 1) -> None:
        """Until ``needle`` appears ``count`` times in the server's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            time.sleep(0.02)
        raise ServerError(f"{needle!r} not in the server log after {timeout:.0f}s")

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the server (as a crash or an out-of-memory kill would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
