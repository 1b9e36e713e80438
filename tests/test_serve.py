"""``reviewbot serve``: a production server (gunicorn) on real HTTP, its request limits."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import WEB_BROKER_DB, WEBHOOKS, redis_url

from reviewbot.github.events import sign
from reviewbot.settings.defaults import MAX_WEBHOOK_BODY_BYTES

SECRET = "serve-test-secret"
REVIEWBOT = Path(sys.executable).parent / "reviewbot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(
    port: int, method: str, path: str, body=None, headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(REVIEWBOT_WEBHOOK_SECRET=SECRET, REVIEWBOT_REDIS_URL=redis_url(WEB_BROKER_DB))
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(REVIEWBOT), "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        assert time.monotonic() < deadline, "reviewbot serve did not answer /healthz"
        time.sleep(0.1)
    yield port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log.close()


def signed(body: bytes, event: str = "ping") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "serve-1",
        "X-Hub-Signature-256": sign(body, SECRET),
    }


def test_serve_runs_gunicorn_and_answers_a_signed_ping(server: int) -> None:
    body = (WEBHOOKS / "ping.with-app_id.json").read_bytes()
    status, headers, answer = request(server, "POST", "/webhook", body, signed(body))
    assert status == 200 and json.loads(answer) == {"status": "pong"}
    assert headers["Server"].startswith("gunicorn")


def test_a_chunked_body_over_the_cap_is_413_not_401(server: int) -> None:
    body = b'{"zen": "' + b"x" * MAX_WEBHOOK_BODY_BYTES + b'"}'
    chunks = (body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20))
    status, _, answer = request(server, "POST", "/webhook", chunks, signed(body))
    assert status == 413, answer
    assert json.loads(answer)["error"] == f"body over {MAX_WEBHOOK_BODY_BYTES} bytes"
    # a chunked body under the cap is read whole: its signature verifies
    small = (WEBHOOKS / "ping.with-app_id.json").read_bytes()
    status, _, answer = request(server, "POST", "/webhook", iter([small]), signed(small))
    assert status == 200 and json.loads(answer) == {"status": "pong"}
