"""The page of ``reviewbot setup`` (a Flask app factory) and what it does on GitHub's
redirect: exchange the code for the App, write the key and ``.env`` (mode 0600).

``GET /`` shows what will be registered and a "Create the GitHub App" button, a form
that POSTs the manifest to GitHub with this run's random ``state``. GitHub sends the
browser back to ``GET /callback?code=...&state=...``: a wrong state is refused (CSRF),
the code is exchanged (:func:`github_exchange`), the files are written and the page
links to the App's installation. :func:`run_setup` serves the page on loopback until
that is done. Neither the key, the webhook secret nor the code reach a log.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from dotenv import dotenv_values
from flask import Flask, Response, render_template_string, request
from werkzeug.serving import WSGIRequestHandler, make_server

from reviewbot import __version__
from reviewbot.settings.defaults import SETUP_EXCHANGE_TIMEOUT
from reviewbot.settings.server import Settings, SettingsError, redact_url
from reviewbot.setup.manifest import (
    CreatedApp,
    GitHubUrls,
    SetupError,
    build_manifest,
    conversion_url,
    env_text,
    events_text,
    is_loopback,
    manifest_json,
    new_app_url,
    parse_conversion,
    permissions_text,
    valid_code,
)

log = logging.getLogger(__name__)

#: Turns a manifest code into GitHub's answer (a JSON object); raises SetupError.
Exchange = Callable[[str], Any]
#: Told each problem as it happens (the command line prints it).
Report = Callable[[str], None]


@dataclass(frozen=True)
class SetupConfig:
    """What ``reviewbot setup`` registers and where it writes the result."""

    urls: GitHubUrls
    webhook_url: str
    name: str
    org: str | None
    homepage_url: str
    env_file: Path
    """Absolute."""
    key_file: Path
    """Absolute; the ``.env`` names it."""
    force: bool
    host: str
    port: int

    @property
    def local_url(self) -> str:
        """The page's address (GitHub redirects the browser back under it)."""
        return f"http://{self._host}:{self.port}"

    @property
    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def redirect_url(self) -> str:
        return f"{self.local_url}/callback"

    @property
    def hosts(self) -> frozenset[str]:
        """``Host`` headers the page answers (no other site's page can read it)."""
        names = {self._host, "localhost", "127.0.0.1", "[::1]"}
        hosts = {f"{h}:{self.port}" for h in names}
        return frozenset(hosts | names if self.port == 80 else hosts)


@dataclass(frozen=True)
class SetupResult:
    """The registered App and the files written (no secret in it)."""

    app_id: int
    slug: str
    name: str
    html_url: str
    install_url: str
    env_file: Path
    key_file: Path


class SetupFailed(RuntimeError):
    """The App was created but its settings could not be written (the message says
    what to do); the command ends with it."""


def check_config(config: SetupConfig) -> None:
    """Before anything is registered: the page serves loopback only, and both files
    can be written (and exist only with ``force``)."""
    if not 0 < config.port < 65536:
        raise SetupError(f"--port must be a TCP port, 1 to 65535 (got {config.port})")
    if not is_loopback(config.host):
        raise SetupError(
            "--host must be a loopback address: the page's callback writes the App's "
            "credentials (on a remote machine: ssh -L 3000:127.0.0.1:3000 HOST, then "
            "open http://127.0.0.1:3000 here)"
        )
    if config.env_file == config.key_file:
        raise SetupError("--env-file and --key-file must be different files")
    if "${" in str(config.key_file):
        raise SetupError(f"--key-file {config.key_file}: a .env file cannot name a path with '${{'")
    for path, option in ((config.env_file, "--env-file"), (config.key_file, "--key-file")):
        if path.exists() and not config.force:
            raise SetupError(f"{option} {path} exists: --force overwrites it")
        if path.exists() and not path.is_file():
            raise SetupError(f"{option} {path} is not a file")
        if not path.parent.is_dir():
            raise SetupError(f"{option} {path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise SetupError(f"{option} {path}: folder {path.parent} is not writable")


def github_exchange(api_url: str, timeout: float = SETUP_EXCHANGE_TIMEOUT) -> Exchange:
    """``POST {api}/app-manifests/{code}/conversions`` (unauthenticated) → the App."""

    def exchange(code: str) -> Any:
        url = conversion_url(api_url, code)
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": f"reviewbot/{__version__}",
        }
        try:
            response = requests.post(url, headers=headers, timeout=timeout)
        except requests.RequestException as e:
            where = redact_url(api_url)
            raise SetupError(f"GitHub did not answer at {where} ({type(e).__name__})") from None
        if response.status_code not in (200, 201):
            try:
                message = str(response.json().get("message") or response.reason)
            except (ValueError, AttributeError):
                message = response.reason or "no message"
            raise SetupError(
                f"GitHub refused the code (HTTP {response.status_code}: {message[:200]}); "
                "a code works once and for an hour: create the App again from the page"
            )
        try:
            return response.json()
        except ValueError:
            raise SetupError("GitHub's answer to the code is not JSON") from None

    return exchange


def _write_private(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path``, mode 0600 from the start; never over an existing
    file unless ``overwrite`` (then replaced atomically)."""
    if overwrite:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def write_settings(config: SetupConfig, app: CreatedApp) -> SetupResult:
    """Write the key, then ``.env``, and check that the server would accept them."""
    try:
        text = env_text(app, config.key_file, config.urls.api)
    except SetupError as e:
        raise SetupFailed(
            f"the App {app.slug} was created ({app.html_url}) but its settings cannot be "
            f"written: {e}; delete the App and run setup again"
        ) from None
    try:
        _write_private(config.key_file, app.pem, config.force)
    except OSError as e:
        raise SetupFailed(
            f"the App {app.slug} was created ({app.html_url}) but its private key could not "
            f"be written to {config.key_file} ({e.strerror or type(e).__name__}); generate a "
            "new private key on the App's settings page, or delete the App and run setup again"
        ) from None
    try:
        _write_private(config.env_file, text, config.force)
    except OSError as e:
        why = "it appeared meanwhile" if isinstance(e, FileExistsError) else e.strerror
        raise SetupFailed(
            f"the App {app.slug} was created ({app.html_url}) and its key written to "
            f"{config.key_file}, but {config.env_file} could not be written "
            f"({why or type(e).__name__}); its id is {app.id}; reset the webhook secret on "
            "the App's settings page and set the variables by hand (README)"
        ) from None
    try:
        values = {k: v for k, v in dotenv_values(config.env_file).items() if v is not None}
        Settings.from_env(values).require_web().require_worker()
    except SettingsError as e:
        raise SetupFailed(f"{config.env_file} does not hold valid settings: {e}") from None
    log.debug("wrote %s and %s (mode 0600)", config.env_file, config.key_file)
    return SetupResult(
        app.id, app.slug, app.name, app.html_url, app.install_url, config.env_file, config.key_file
    )


class SetupFlow:
    """One run of the flow: its ``state``, and how it ended (``finished`` is set once the
    answer page has been sent: with ``result``, or ``failure`` when nothing can be retried)."""

    def __init__(self, config: SetupConfig, exchange: Exchange, report: Report) -> None:
        self.config = config
        self.exchange = exchange
        self.report = report
        self.state = secrets.token_urlsafe(32)
        self.finished = threading.Event()
        self.result: SetupResult | None = None
        self.failure: str | None = None
        self._lock = threading.Lock()

    def callback(self, code: str, state: str) -> tuple[str, str, int]:
        """GitHub's redirect: (page kind, message, HTTP status)."""
        if not state or not hmac.compare_digest(state.encode(), self.state.encode()):
            message = (
                "this callback's state is not the one this setup page sent to GitHub: ignored "
                "(it did not come back from GitHub after this page's button)"
            )
            self.report(message)
            return "error", message, 400
        if not valid_code(code):
            message = "GitHub's redirect carried no valid code: create the App again"
            self.report(message)
            return "error", message, 400
        with self._lock:
            if self.result is not None or self.failure is not None:
                return "error", "this setup has already finished", 409
            try:
                app = parse_conversion(self.exchange(code))
            except SetupError as e:
                self.report(f"{e} (the page stays open: try again, or Ctrl-C)")
                return "error", str(e), 502
            try:
                self.result = write_settings(self.config, app)
            except SetupFailed as e:
                self.failure = str(e)
                return "failed", self.failure, 500
        log.info("registered the GitHub App %s (id %d)", app.slug, app.id)
        return "done", "", 200


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reviewbot setup</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 3rem auto;
       padding: 0 1rem; color: #1f2328; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; }
button, .button { font: inherit; padding: .6rem 1.2rem; border: 0; border-radius: 6px;
       background: #1f883d; color: #fff; cursor: pointer; text-decoration: none; }
.error { border-left: 4px solid #cf222e; padding: .3rem 1rem; background: #ffebe9; }
dt { font-weight: 600; }
</style></head><body>
<h1>reviewbot setup</h1>
{% if kind == "start" %}
<p>This registers reviewbot as a GitHub App {% if config.org %}owned by the organisation
<code>{{ config.org }}</code>{% else %}owned by your GitHub account{% endif %} on
<code>{{ config.urls.web }}</code>. GitHub asks you to confirm its name, then sends you
back here; this machine then writes <code>{{ config.env_file }}</code> and the App's
private key <code>{{ config.key_file }}</code>.</p>
<dl>
<dt>Name</dt><dd>{{ config.name }}</dd>
<dt>Webhook</dt><dd><code>{{ config.webhook_url }}</code></dd>
<dt>Permissions</dt><dd>{{ permissions }}</dd>
<dt>Events</dt><dd>{{ events }}</dd>
</dl>
<form id="create" action="{{ action }}" method="post">
<input type="hidden" name="manifest" value="{{ manifest }}">
<button type="submit">Create the GitHub App</button>
</form>
{% elif kind == "done" %}
<h2 id="done">The GitHub App {{ result.name }} is registered</h2>
<p>Its id is {{ result.app_id }}; the settings are in <code>{{ result.env_file }}</code>,
its private key in <code>{{ result.key_file }}</code> (both readable by you only).</p>
<p><a id="install" class="button" href="{{ result.install_url }}">Install the App on your
repositories</a></p>
<p>Then, in <code>{{ result.env_file.parent }}</code>, run <code>reviewbot serve</code> and
<code>reviewbot worker</code>. This page has stopped; you can close it.</p>
{% else %}
<h2 id="error">{% if kind == "failed" %}Setup failed{% else %}That did not work{% endif %}</h2>
<p class="error">{{ message }}</p>
{% if kind != "failed" %}<p><a href="/">Start again</a></p>{% endif %}
{% endif %}
</body></html>
"""


def create_setup_app(flow: SetupFlow) -> Flask:
    """The setup page's Flask app (``GET /``, ``GET /callback``)."""
    config = flow.config
    app = Flask(__name__)
    manifest = manifest_json(
        build_manifest(config.name, config.webhook_url, config.redirect_url, config.homepage_url)
    )
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        f"frame-ancestors 'none'; form-action 'self' {config.urls.web}"
    )

    def page(kind: str, status: int = 200, message: str = "") -> Response:
        html = render_template_string(
            _PAGE,
            kind=kind,
            message=message,
            config=config,
            result=flow.result,
            action=new_app_url(config.urls.web, config.org, flow.state),
            manifest=manifest,
            permissions=permissions_text(),
            events=events_text(),
        )
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    @app.before_request
    def only_this_host() -> Response | None:
        if request.host.lower() not in config.hosts:
            return Response("unexpected Host header\n", status=421, content_type="text/plain")
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = policy
        return response

    @app.get("/")
    def start() -> Response:
        if flow.result is not None:
            return page("done")
        return page("start")

    @app.get("/callback")
    def callback() -> Response:
        kind, message, status = flow.callback(
            request.args.get("code", ""), request.args.get("state", "")
        )
        response = page(kind, status, message)
        if kind in ("done", "failed"):
            response.call_on_close(flow.finished.set)
        return response

    return app


class _QuietHandler(WSGIRequestHandler):
    """Logs each request's path without its query (the code is a credential)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path
        log.info("%s %s %s", self.command, path, getattr(code, "value", code))


def _has_display() -> bool:
    """Whether a graphical browser can open here (without one, Python's webbrowser
    would start a text browser in this terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_setup(
    config: SetupConfig,
    open_browser: bool = True,
    exchange: Exchange | None = None,
    report: Report | None = None,
    announce: Callable[[str], None] | None = None,
) -> SetupResult:
    """Serve the page until the App is registered and its settings are written; raise
    SetupError (nothing registered yet) or SetupFailed (registered, not written)."""
    check_config(config)
    flow = SetupFlow(
        config,
        exchange or github_exchange(config.urls.api),
        report or (lambda message: log.error("%s", message)),
    )
    try:
        server = make_server(
            config.host,
            config.port,
            create_setup_app(flow),
            threaded=True,
            request_handler=_QuietHandler,
        )
    except OSError as e:
        raise SetupError(f"cannot serve the page on {config.local_url}: {e.strerror}") from None
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    url = f"{config.local_url}/"
    try:
        if announce is not None:
            announce(url)
        if open_browser and _has_display():
            try:
                webbrowser.open(url)
            except webbrowser.Error as e:
                log.warning("could not open a browser (%s): open %s", e, url)
        while not flow.finished.wait(0.2):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    if flow.failure is not None:
        raise SetupFailed(flow.failure)
    assert flow.result is not None
    return flow.result
