"""``reviewbot setup`` without a browser: the manifest, the URLs and the ``.env`` text
(pure), the page's answers to GitHub's redirect (Flask's test client), the code's
exchange against the GitHub stand-in, and the command line's refusals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT
from dotenv import dotenv_values
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401

from reviewbot.settings.defaults import APP_EVENTS, APP_PERMISSIONS
from reviewbot.settings.server import Settings
from reviewbot.setup.app import (
    SetupConfig,
    SetupFlow,
    check_config,
    create_setup_app,
    github_exchange,
)
from reviewbot.setup.manifest import (
    CreatedApp,
    GitHubUrls,
    SetupError,
    build_manifest,
    check_name,
    check_org,
    check_url,
    env_text,
    events_text,
    github_urls,
    manifest_json,
    new_app_url,
    parse_conversion,
    permissions_text,
    quote_env,
)

REVIEWBOT = Path(sys.executable).parent / "reviewbot"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n"
SECRET = "whsec-0123456789abcdef"


# --- the manifest and the URLs ---------------------------------------------------------


def test_the_readme_lists_the_permissions_and_events_of_the_manifest() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert permissions_text() == (
        "Pull requests read & write, Checks read & write, Contents read, "
        "Issues read & write, Metadata read"
    )
    assert events_text() == "Pull request, Issue comment, Pull request review comment"
    assert f"permissions: {permissions_text()}; events: {events_text()}" in readme


def test_the_manifest_has_githubs_documented_shape() -> None:
    manifest = build_manifest(
        "reviewbot", "https://rb.example.com/webhook", "http://127.0.0.1:3000/callback",
        "https://rb.example.com",
    )  # fmt: skip
    assert manifest == {
        "name": "reviewbot",
        "url": "https://rb.example.com",
        "description": manifest["description"],
        "hook_attributes": {"url": "https://rb.example.com/webhook", "active": True},
        "redirect_url": "http://127.0.0.1:3000/callback",
        "public": False,
        "default_permissions": {
            "pull_requests": "write",
            "checks": "write",
            "contents": "read",
            "issues": "write",
            "metadata": "read",
        },
        "default_events": ["pull_request", "issue_comment", "pull_request_review_comment"],
    }
    assert manifest["default_permissions"] == dict(APP_PERMISSIONS)
    assert tuple(manifest["default_events"]) == APP_EVENTS
    assert json.loads(manifest_json(manifest)) == manifest


@pytest.mark.parametrize(
    ("web", "api", "expected"),
    [
        ("https://github.com", None, ("https://github.com", "https://api.github.com")),
        ("https://GitHub.com/", None, ("https://GitHub.com", "https://api.github.com")),
        ("https://ghe.example.com", None, ("https://ghe.example.com", "https://ghe.example.com/api/v3")),
        ("http://127.0.0.1:8080", None, ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v3")),
        ("https://github.com", "http://localhost:9/api/", ("https://github.com", "http://localhost:9/api")),
    ],
)  # fmt: skip
def test_github_urls(web: str, api: str | None, expected: tuple[str, str]) -> None:
    assert github_urls(web, api) == GitHubUrls(*expected)


@pytest.mark.parametrize(
    ("web", "api", "message"),
    [
        ("http://ghe.example.com", None, "--github-url must use https"),
        ("https://github.com/login", None, "--github-url must be a site"),
        ("ftp://github.com", None, "--github-url must be an https URL"),
        ("https://github.com", "http://10.1.2.3", "--github-api-url: REVIEWBOT_GITHUB_API_URL"),
        ("https://github.com", "api.example.com", "--github-api-url:"),
    ],
)  # fmt: skip
def test_github_urls_refuse_plain_http_off_loopback(
    web: str, api: str | None, message: str
) -> None:
    with pytest.raises(SetupError, match="^" + message.replace(".", r"\.")):
        github_urls(web, api)


def test_the_webhook_url_is_https_unless_loopback() -> None:
    assert check_url("https://rb.example.com/webhook/", "--webhook-url") == (
        "https://rb.example.com/webhook"
    )
    assert check_url("http://127.0.0.1:8000/webhook", "--webhook-url")
    assert check_url("http://[::1]:8000/webhook", "--webhook-url")
    for bad in ("http://rb.example.com/webhook", "rb.example.com/webhook", "https://u:p@h/x"):
        with pytest.raises(SetupError, match="--webhook-url"):
            check_url(bad, "--webhook-url")


def test_the_form_posts_to_the_users_or_the_organisations_new_app_page() -> None:
    assert new_app_url("https://github.com", None, "s t") == (
        "https://github.com/settings/apps/new?state=s+t"
    )
    assert new_app_url("https://ghe.example.com", "octo-org", "abc") == (
        "https://ghe.example.com/organizations/octo-org/settings/apps/new?state=abc"
    )


def test_org_and_name_are_checked() -> None:
    assert check_org(None) is None and check_org("octo-org") == "octo-org"
    for bad in ("octo/org", "-octo", "x" * 40, ""):
        with pytest.raises(SetupError, match="--org"):
            check_org(bad)
    assert check_name(" reviewbot ") == "reviewbot"
    for bad in ("", " ", "x" * 35):
        with pytest.raises(SetupError, match="--name"):
            check_name(bad)


# --- GitHub's answer and the .env ------------------------------------------------------


def conversion(**changes: Any) -> dict[str, Any]:
    data = {
        "id": 12345,
        "slug": "my-reviewbot",
        "name": "My reviewbot",
        "html_url": "https://github.com/apps/my-reviewbot",
        "webhook_secret": SECRET,
        "pem": PEM,
        "client_id": "Iv1.abc",
        "client_secret": "cs-secret",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_githubs_answer_becomes_the_app_and_its_repr_hides_the_secrets() -> None:
    app = parse_conversion(conversion())
    assert (app.id, app.slug, app.name) == (12345, "my-reviewbot", "My reviewbot")
    assert app.bot_login == "my-reviewbot[bot]"
    assert app.install_url == "https://github.com/apps/my-reviewbot/installations/new"
    assert SECRET not in repr(app) and "PRIVATE KEY" not in repr(app)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "no App id"),
        ({"id": "12"}, "no App id"),
        ({"slug": "bad slug"}, "no valid App slug"),
        ({"html_url": "javascript:alert(1)"}, "no valid html_url"),
        ({"webhook_secret": None}, "no webhook secret"),
        ({"pem": "not a key " + SECRET}, "no PEM private key"),
    ],
)
def test_a_bad_answer_is_named_without_its_values(changes: dict, message: str) -> None:
    with pytest.raises(SetupError, match=message) as raised:
        parse_conversion(conversion(**changes))
    assert SECRET not in str(raised.value)
    with pytest.raises(SetupError, match="not a JSON object"):
        parse_conversion([])


def test_quoted_values_read_back_literally_with_python_dotenv(tmp_path: Path) -> None:
    nasty = "a'b\\c $HOME {x} \"q\" #x\n$y\\'"
    env = tmp_path / ".env"
    env.write_text(f"A={quote_env(nasty)}\nB={quote_env('')}\n")
    assert dotenv_values(env) == {"A": nasty, "B": ""}
    # python-dotenv expands ${NAME} even in single quotes, and has no escape for it
    with pytest.raises(SetupError, match="cannot be written"):
        quote_env("a${HOME}")


@pytest.mark.parametrize("api", ["https://api.github.com", "https://ghe.example.com/api/v3"])
def test_the_env_text_is_what_serve_and_worker_accept(tmp_path: Path, api: str) -> None:
    folder = tmp_path / "it's a #folder $HOME"
    folder.mkdir()
    key = folder / "reviewbot-app.pem"
    key.write_text(PEM)
    app = parse_conversion(conversion(webhook_secret="s'e\\c$X"))
    env = folder / ".env"
    env.write_text(env_text(app, key, api))
    values = dotenv_values(env)
    expected = {
        "REVIEWBOT_APP_ID": "12345",
        "REVIEWBOT_WEBHOOK_SECRET": "s'e\\c$X",
        "REVIEWBOT_PRIVATE_KEY_PATH": str(key),
        "REVIEWBOT_BOT_LOGIN": "my-reviewbot[bot]",
    }
    if api != "https://api.github.com":
        expected["REVIEWBOT_GITHUB_API_URL"] = api
    assert values == expected
    settings = Settings.from_env(values).require_web().require_worker()  # type: ignore[arg-type]
    assert settings.app_id == 12345 and settings.webhook_secrets == ("s'e\\c$X",)
    assert settings.private_key == PEM and settings.github_api_url == api
    assert settings.bot_login == "my-reviewbot[bot]"
    assert "cs-secret" not in env.read_text()


# --- the page (Flask's test client; the exchange faked) --------------------------------


def make_config(folder: Path, **changes: Any) -> SetupConfig:
    fields: dict[str, Any] = {
        "urls": GitHubUrls("https://github.com", "https://api.github.com"),
        "webhook_url": "https://rb.example.com/webhook",
        "name": "reviewbot",
        "org": None,
        "homepage_url": "https://rb.example.com",
        "env_file": folder / ".env",
        "key_file": folder / "reviewbot-app.pem",
        "force": False,
        "host": "127.0.0.1",
        "port": 3999,
    }
    fields.update(changes)
    return SetupConfig(**fields)


class Page:
    """The setup app under Flask's test client, with a scripted exchange."""

    def __init__(self, config: SetupConfig, answers: list[Any]) -> None:
        self.codes: list[str] = []
        self.reports: list[str] = []
        self.answers = answers

        def exchange(code: str) -> Any:
            self.codes.append(code)
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.flow = SetupFlow(config, exchange, self.reports.append)
        self.client = create_setup_app(self.flow).test_client()
        self.base = config.local_url

    def get(self, path: str, **query: str):
        return self.client.get(path, base_url=self.base, query_string=query)


def test_the_page_posts_the_manifest_with_its_state(tmp_path: Path) -> None:
    config = make_config(tmp_path, org="octo-org")
    page = Page(config, [])
    r = page.get("/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "Create the GitHub App</button>" in html
    action = f"https://github.com/organizations/octo-org/settings/apps/new?state={page.flow.state}"
    assert f'action="{action}" method="post"' in html
    assert len(page.flow.state) >= 40
    manifest = build_manifest(
        "reviewbot", config.webhook_url, "http://127.0.0.1:3999/callback", config.homepage_url
    )
    field = html.split('name="manifest" value="', 1)[1].split('"', 1)[0]
    assert json.loads(field.replace("&#34;", '"').replace("&amp;", "&")) == manifest
    assert (
        r.headers["Referrer-Policy"] == "no-referrer" and r.headers["Cache-Control"] == "no-store"
    )
    assert "form-action 'self' https://github.com" in r.headers["Content-Security-Policy"]
    # another site's name for this address (DNS rebinding) gets nothing
    other = page.client.get("/", base_url="http://evil.example:3999")
    assert other.status_code == 421 and page.flow.state not in other.get_data(as_text=True)


def test_a_wrong_state_is_refused_without_exchanging_the_code(tmp_path: Path) -> None:
    page = Page(make_config(tmp_path), [conversion()])
    for state in ("", "forged"):
        r = page.get("/callback", code="abc123", state=state)
        assert r.status_code == 400 and "state" in r.get_data(as_text=True)
    assert page.codes == [] and not (tmp_path / ".env").exists()
    assert len(page.reports) == 2 and "state" in page.reports[0]
    assert not page.flow.finished.is_set()


def test_a_refused_code_shows_githubs_reason_and_the_page_stays_open(tmp_path: Path) -> None:
    refused = SetupError("GitHub refused the code (HTTP 404: Not Found); a code works once")
    page = Page(make_config(tmp_path), [refused, conversion()])
    r = page.get("/callback", code="c1", state=page.flow.state)
    assert r.status_code == 502 and "GitHub refused the code (HTTP 404" in r.get_data(as_text=True)
    assert page.reports and "refused" in page.reports[0]
    assert not page.flow.finished.is_set() and not (tmp_path / ".env").exists()
    # a second App creation from the page works
    r = page.get("/callback", code="c2", state=page.flow.state)
    r.close()
    assert r.status_code == 200 and page.codes == ["c1", "c2"]
    assert page.flow.finished.is_set() and page.flow.result is not None


def test_the_callback_writes_the_key_and_env_0600_and_links_the_installation(
    tmp_path: Path,
) -> None:
    page = Page(make_config(tmp_path), [conversion()])
    r = page.get("/callback", code="abc123", state=page.flow.state)
    html = r.get_data(as_text=True)
    r.close()
    assert r.status_code == 200, html
    assert 'id="install"' in html
    assert 'href="https://github.com/apps/my-reviewbot/installations/new"' in html
    assert SECRET not in html and "PRIVATE KEY" not in html
    env, key = tmp_path / ".env", tmp_path / "reviewbot-app.pem"
    for path in (env, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.read_text() == PEM
    assert dotenv_values(env)["REVIEWBOT_PRIVATE_KEY_PATH"] == str(key)
    assert page.flow.finished.is_set() and page.flow.failure is None
    # GitHub's redirect again (a reload): nothing is exchanged or written twice
    again = page.get("/callback", code="abc123", state=page.flow.state)
    assert again.status_code == 409 and page.codes == ["abc123"]
    assert 'id="install"' in page.get("/").get_data(as_text=True)


def test_a_write_failure_says_what_to_do_and_ends_the_flow(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    page = Page(make_config(folder), [conversion()])
    folder.rmdir()  # after the start-up check: writing the key fails
    r = page.get("/callback", code="abc123", state=page.flow.state)
    html = r.get_data(as_text=True)
    r.close()
    assert r.status_code == 500 and "Setup failed" in html
    assert (
        "private key could not be written" in html
        and "https://github.com/apps/my-reviewbot" in html
    )
    assert SECRET not in html and "PRIVATE KEY" not in html
    assert page.flow.finished.is_set() and page.flow.failure is not None
    assert SECRET not in page.flow.failure


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KEEP=1\n")
    with pytest.raises(SetupError, match="exists: --force overwrites it"):
        check_config(make_config(tmp_path))
    os.chmod(tmp_path / ".env", 0o644)
    page = Page(make_config(tmp_path, force=True), [conversion()])
    r = page.get("/callback", code="abc123", state=page.flow.state)
    r.close()
    assert r.status_code == 200
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert "KEEP" not in (tmp_path / ".env").read_text()
    with pytest.raises(SetupError, match="loopback"):
        check_config(make_config(tmp_path, host="0.0.0.0", force=True))
    with pytest.raises(SetupError, match="cannot name a path"):
        check_config(make_config(tmp_path, force=True, key_file=tmp_path / "${HOME}.pem"))


# --- the exchange against the GitHub stand-in ------------------------------------------


def test_the_exchange_turns_the_standins_code_into_the_app_once(
    github: GitHubStandIn, app_key: str
) -> None:
    github.app_private_key = app_key
    manifest = build_manifest(
        "reviewbot", "https://h/webhook", "http://127.0.0.1:1/cb", "https://h"
    )
    r = requests.post(
        f"{github.web_url}/settings/apps/new?state=s1",
        data={"manifest": manifest_json(manifest)},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith("http://127.0.0.1:1/cb?code=") and location.endswith("&state=s1")
    code = location.split("code=", 1)[1].split("&", 1)[0]
    exchange = github_exchange(github.url)
    app = parse_conversion(exchange(code))
    assert isinstance(app, CreatedApp)
    assert (app.id, app.slug, app.pem) == (APP_ID, "reviewbot", app_key)
    assert app.webhook_secret == github.app_webhook_secret
    (request,) = github.requests_to("POST", "/app-manifests/")
    assert request.auth is None
    with pytest.raises(SetupError, match=r"GitHub refused the code \(HTTP 404: Not Found\)"):
        exchange(code)
    assert github.manifests == [{"org": None, "state": "s1", "manifest": manifest}]
    # an organisation's page, as the page's form posts it
    url = new_app_url(github.web_url, "octo-org", "s2")
    r = requests.post(
        url, data={"manifest": manifest_json(manifest)}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("&state=s2")
    assert github.manifests[-1] == {"org": "octo-org", "state": "s2", "manifest": manifest}


# --- the command line's refusals (before anything is registered) ------------------------


def run_setup_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    return subprocess.run(
        [str(REVIEWBOT), "setup", "--no-browser", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-url", "http://rb.example.com/webhook"], "--webhook-url must use https"),
        (["--webhook-url", "https://h/webhook", "--org", "a/b"], "--org must be"),
        (["--webhook-url", "https://h/webhook", "--host", "0.0.0.0"], "--host must be a loopback"),
        (["--webhook-url", "https://h/webhook", "--port", "0"], "--port must be a TCP port"),
        (["--webhook-url", "https://h/webhook", "--env-file", "existing.env"], "exists: --force"),
        (["--webhook-url", "https://h/webhook", "--env-file", "no/such/.env"], "does not exist"),
        (["--webhook-url", "https://h/webhook", "--github-url", "http://ghe.example.com"], "https"),
    ],
)  # fmt: skip
def test_the_command_refuses_bad_options_clearly(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "existing.env").write_text("X=1\n")
    proc = run_setup_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("reviewbot: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.env"]
