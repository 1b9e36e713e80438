"""``reviewbot setup`` in a real browser, then the App it registered at work.

``reviewbot setup`` runs as a subprocess against the GitHub stand-in (its web "create
app" page and its API); headless chromium (Debian's, driven by Playwright) opens the
setup page and clicks "Create the GitHub App"; the stand-in redirects back with a code
and the page links to the installation. Then ``reviewbot serve`` and ``reviewbot
worker`` run where the written ``.env`` is, with no App setting of their own: a
pull_request delivery signed with the secret GitHub handed out becomes a review posted
as the App. A browser that cannot start fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import E2E_BROKER_DB, ROOT, WEBHOOKS, redis_url
from dotenv import dotenv_values
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401

from reviewbot.github.events import sign
from reviewbot.settings.defaults import APP_EVENTS, APP_PERMISSIONS

REVIEWBOT = Path(sys.executable).parent / "reviewbot"
CHROMIUM = Path("/usr/bin/chromium")
BROKER = redis_url(E2E_BROKER_DB)
OPENED = json.loads((WEBHOOKS / "pull_request.opened.json").read_text())
REPO = OPENED["repository"]["full_name"]
NUMBER = OPENED["number"]
HEAD = OPENED["pull_request"]["head"]["sha"]
BASE = OPENED["pull_request"]["base"]["sha"]
SAMPLE_DIFF = (ROOT / "examples" / "sample.diff").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, proc=None) -> Any:
    """Poll ``predicate`` until it returns something true; fail past ``timeout`` or when
    ``proc`` (a Process) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if proc is not None and proc.exited():
            raise AssertionError(f"{proc.name} exited while waiting for {what}:\n{proc.text()}")
        time.sleep(0.1)
    tail = f":\n{proc.text()}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Process:
    """A ``reviewbot`` subprocess whose output goes to a log file."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = cwd.parent / f"{name}.log"
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(REVIEWBOT), *args], cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> Process:
        started.append(Process(name, args, cwd, env))
        return started[-1]

    yield start
    for p in reversed(started):
        p.stop()


@pytest.fixture
def broker() -> Iterator[None]:
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    yield
    r.flushdb()


def base_env() -> dict[str, str]:
    """The test's environment without any reviewbot setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}


def click_through_setup(page_url: str) -> str:
    """Open the setup page in headless chromium, click the button, wait for the page
    GitHub's redirect leads to; the install link's address."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: bash scripts/setup.sh --dev installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.goto(page_url)
            page.get_by_role("button", name="Create the GitHub App").click()
            link = page.locator("a#install")
            link.wait_for(state="visible", timeout=30_000)
            assert "/callback?code=" in page.url
            href = link.get_attribute("href")
        finally:
            browser.close()
    assert href
    return href


def test_setup_in_a_browser_registers_an_app_that_then_reviews(
    github: GitHubStandIn,
    app_key: str,
    tiny_model_dir: Path,
    broker: None,
    processes: Callable[..., Process],
    tmp_path: Path,
) -> None:
    github.app_private_key = app_key
    github.add_repo(REPO)
    github.add_pull(REPO, NUMBER, SAMPLE_DIFF, HEAD, BASE)
    site = tmp_path / "site"
    site.mkdir()
    env_file = site / ".env"
    setup_port, serve_port = free_port(), free_port()
    webhook = f"http://127.0.0.1:{serve_port}/webhook"
    setup = processes(
        "setup",
        [
            "setup",
            "--no-browser",
            "--webhook-url",
            webhook,
            "--github-url",
            github.web_url,
            "--github-api-url",
            github.url,
            "--env-file",
            str(env_file),
            "--port",
            str(setup_port),
        ],
        site,
        base_env(),
    )
    page_url = f"http://127.0.0.1:{setup_port}/"
    wait_until(lambda: answers(page_url), 30, "the setup page", setup)

    install = click_through_setup(page_url)

    assert install == f"{github.web_url}/apps/reviewbot/installations/new"
    assert setup.proc.wait(timeout=30) == 0, setup.text()
    out = setup.text()
    assert f"install it on your repositories: {install}" in out
    assert app_key.strip().splitlines()[1] not in out and github.app_webhook_secret not in out
    assert "GET /callback 200" in out and "code=" not in out  # the code is not logged
    # GitHub got the manifest from the page, with the state the callback checked
    (posted,) = github.manifests
    assert posted["org"] is None and posted["state"]
    manifest = posted["manifest"]
    assert manifest["hook_attributes"] == {"url": webhook, "active": True}
    assert manifest["default_permissions"] == dict(APP_PERMISSIONS)
    assert manifest["default_events"] == list(APP_EVENTS)
    assert manifest["public"] is False and manifest["name"] == "reviewbot"
    assert manifest["redirect_url"] == f"http://127.0.0.1:{setup_port}/callback"
    assert manifest["url"] == f"http://127.0.0.1:{serve_port}"
    # the key and .env: private, and what GitHub handed out
    key = site / "reviewbot-app.pem"
    for path in (env_file, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert key.read_text() == app_key
    assert dotenv_values(env_file) == {
        "REVIEWBOT_APP_ID": str(APP_ID),
        "REVIEWBOT_WEBHOOK_SECRET": github.app_webhook_secret,
        "REVIEWBOT_PRIVATE_KEY_PATH": str(key),
        "REVIEWBOT_BOT_LOGIN": "reviewbot[bot]",
        "REVIEWBOT_GITHUB_API_URL": github.url,
    }

    # the App at work: serve and worker read .env where they run, nothing else of the App
    env = base_env()
    env.update(
        REVIEWBOT_REDIS_URL=BROKER,
        REVIEWBOT_MODEL=str(tiny_model_dir),
        REVIEWBOT_QUANTIZE="4bit",
        REVIEWBOT_MAX_NEW_TOKENS="10",
        HF_HUB_OFFLINE="1",
    )
    serve = processes("serve", ["serve", "--port", str(serve_port), "--workers", "1"], site, env)
    worker = processes(
        "worker", ["worker", f"--hostname=setup-{uuid.uuid4().hex[:6]}@%h"], site, env
    )
    wait_until(lambda: answers(f"http://127.0.0.1:{serve_port}/healthz"), 60, "serve", serve)
    wait_until(lambda: "ready" in worker.text(), 120, "the worker", worker)

    body = json.dumps(OPENED).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, github.app_webhook_secret),
    }
    r = requests.post(webhook, data=body, headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    reviews = wait_until(lambda: github.reviews(REPO, NUMBER), 180, "the review", worker)
    assert len(reviews) == 1
    assert reviews[0]["user"]["login"] == "reviewbot[bot]"
    assert f"<!-- reviewbot:auto:{HEAD}:" in reviews[0]["body"]
    tokens = github.requests_to("POST", "/access_tokens$")
    assert tokens and all(t.auth == "jwt" for t in tokens)  # signed with the key setup wrote
