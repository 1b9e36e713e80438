"""GitHub's App manifest flow, sans I/O: URLs, the manifest, GitHub's answer, ``.env``.

The flow (GitHub's "Registering a GitHub App from a manifest"): a page POSTs a form
field ``manifest`` (the App as JSON) to ``{web}/settings/apps/new?state=S`` (an
organisation's: ``{web}/organizations/{org}/settings/apps/new``); the person names
and creates the App on GitHub, which redirects to the manifest's ``redirect_url``
with ``?code=C&state=S``; ``POST {api}/app-manifests/{C}/conversions`` (no
authentication, within an hour, once) answers the App with its id, slug, private key
and webhook secret. This module builds and checks each piece; :mod:`.app` does the I/O.
The App's permissions and events come from :mod:`reviewbot.settings.defaults`, the one
source the README's list agrees with (:func:`permissions_text`, :func:`events_text`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

from reviewbot.settings.defaults import (
    APP_EVENTS,
    APP_PERMISSIONS,
    DEFAULT_GITHUB_API_URL,
    DEFAULT_GITHUB_WEB_URL,
)
from reviewbot.settings.server import (  # the one loopback rule
    APP_ID,
    BOT_LOGIN,
    GITHUB_API_URL,
    PRIVATE_KEY_PATH,
    WEBHOOK_SECRET,
    Settings,
    SettingsError,
    is_loopback,
    split_url,
)

#: GitHub's limit on an App's name.
APP_NAME_MAX_CHARS = 34
#: What GitHub accepts as an account (user or organisation) login, and an App's slug.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
#: What a manifest code may look like before it goes into a URL path.
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+-----END [A-Z ]*PRIVATE KEY-----", re.S)
_ACCESS_TEXT = {"read": "read", "write": "read & write"}


class SetupError(ValueError):
    """A problem with the options or with GitHub's answer; the message names what, and
    never holds a secret."""


@dataclass(frozen=True)
class GitHubUrls:
    """GitHub's web site (where Apps are created) and its REST API."""

    web: str
    api: str


def _split(url: str) -> SplitResult | None:
    """``url`` split, when it is an http(s) URL with a host (:func:`split_url`)."""
    parts = split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts


def check_url(url: str, option: str, *, path: bool = True) -> str:
    """``url`` (its trailing slash dropped) when it is https, or plain http to a loopback
    host; ``path`` False: it must be a bare origin (no query or fragment either)."""
    parts = _split(url.strip())
    if parts is None:
        raise SetupError(f"{option} must be an https URL (got {url!r})")
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise SetupError(f"{option} must use https (plain http is allowed for loopback hosts only)")
    if parts.username or parts.password:
        raise SetupError(f"{option} must not hold a user name or password")
    if not path and (parts.path.strip("/") or parts.query or parts.fragment):
        raise SetupError(f"{option} must be a site such as {DEFAULT_GITHUB_WEB_URL}, no path")
    return url.strip().rstrip("/")


def github_urls(web_url: str = DEFAULT_GITHUB_WEB_URL, api_url: str | None = None) -> GitHubUrls:
    """The web and API URLs: github.com's API is api.github.com, GitHub Enterprise's
    ``{web}/api/v3``; ``api_url`` overrides it. The API URL is checked exactly as the
    server checks ``REVIEWBOT_GITHUB_API_URL`` (setup writes it there)."""
    web = check_url(web_url, "--github-url", path=False)
    option = "--github-api-url" if api_url else "--github-url"
    if api_url is None:
        host = (urlsplit(web).hostname or "").lower()
        api_url = DEFAULT_GITHUB_API_URL if host == "github.com" else f"{web}/api/v3"
    try:
        api = Settings.from_env({GITHUB_API_URL: api_url}).github_api_url
    except SettingsError as e:
        raise SetupError(f"{option}: {'; '.join(e.problems)}") from None
    return GitHubUrls(web, api)


def check_org(org: str | None) -> str | None:
    """An organisation's login (None: the App belongs to the signed-in user)."""
    if org is None:
        return None
    if not _LOGIN.fullmatch(org):
        raise SetupError(f"--org must be a GitHub organisation login (got {org!r})")
    return org


def check_name(name: str) -> str:
    """The App's name: GitHub allows at most 34 characters."""
    name = name.strip()
    if not name or len(name) > APP_NAME_MAX_CHARS:
        raise SetupError(f"--name must be 1 to {APP_NAME_MAX_CHARS} characters (got {name!r})")
    return name


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (the default homepage: the webhook's site)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def new_app_url(web: str, org: str | None, state: str) -> str:
    """Where the page POSTs the manifest, ``state`` in the query."""
    where = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{web}{where}/settings/apps/new?{urlencode({'state': state})}"


def permissions() -> dict[str, str]:
    """The manifest's ``default_permissions``."""
    return dict(APP_PERMISSIONS)


def permissions_text() -> str:
    """The permissions as the README lists them: "Pull requests read & write, ..."."""
    return ", ".join(
        f"{name.replace('_', ' ').capitalize()} {_ACCESS_TEXT[access]}"
        for name, access in APP_PERMISSIONS
    )


def events_text() -> str:
    """The events as the README lists them: "Pull request, Issue comment, ..."."""
    return ", ".join(event.replace("_", " ").capitalize() for event in APP_EVENTS)


def build_manifest(
    name: str, webhook_url: str, redirect_url: str, homepage_url: str
) -> dict[str, Any]:
    """The App's manifest (GitHub's documented parameters)."""
    return {
        "name": name,
        "url": homepage_url,
        "description": "Self-hosted AI code review of pull requests (reviewbot).",
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": redirect_url,
        "public": False,
        "default_permissions": permissions(),
        "default_events": list(APP_EVENTS),
    }


def manifest_json(manifest: dict[str, Any]) -> str:
    """The form field's value."""
    return json.dumps(manifest, separators=(",", ":"))


def valid_code(code: str) -> bool:
    """Whether ``code`` (from the redirect's query) may go into the conversion URL."""
    return bool(_CODE.fullmatch(code))


def conversion_url(api: str, code: str) -> str:
    """``POST`` here turns the code into the App (unauthenticated)."""
    if not valid_code(code):
        raise SetupError("the code GitHub sent back does not look like one")
    return f"{api}/app-manifests/{code}/conversions"


@dataclass(frozen=True)
class CreatedApp:
    """The App GitHub created (the conversion's answer); ``repr`` hides the secrets."""

    id: int
    slug: str
    name: str
    html_url: str
    webhook_secret: str = field(repr=False)
    pem: str = field(repr=False)

    @property
    def bot_login(self) -> str:
        """The account the App comments as."""
        return f"{self.slug}[bot]"

    @property
    def install_url(self) -> str:
        """Where the App is installed on an account's repositories."""
        return f"{self.html_url}/installations/new"


def parse_conversion(data: Any) -> CreatedApp:
    """GitHub's answer to the conversion, checked; the message names a missing or bad
    field, never its value."""
    if not isinstance(data, dict):
        raise SetupError("GitHub's answer is not a JSON object")
    app_id = data.get("id")
    if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id <= 0:
        raise SetupError("GitHub's answer has no App id")
    slug = data.get("slug")
    if not isinstance(slug, str) or not _LOGIN.fullmatch(slug):
        raise SetupError("GitHub's answer has no valid App slug")
    html_url = data.get("html_url")
    if not isinstance(html_url, str) or _split(html_url) is None or re.search(r"\s", html_url):
        raise SetupError("GitHub's answer has no valid html_url")
    secret = data.get("webhook_secret")
    if not isinstance(secret, str) or not secret.strip():
        raise SetupError("GitHub's answer has no webhook secret")
    pem = data.get("pem")
    if not isinstance(pem, str) or not _PEM.search(pem):
        raise SetupError("GitHub's answer has no PEM private key")
    name = data.get("name") if isinstance(data.get("name"), str) else slug
    return CreatedApp(app_id, slug, name, html_url.rstrip("/"), secret.strip(), pem)


def quote_env(value: str) -> str:
    """``value`` as a python-dotenv single-quoted value (``\\`` and ``'`` escaped), read
    back as it is. python-dotenv expands ``${NAME}`` in every value and has no escape
    for it: such a value is refused (SetupError)."""
    if "${" in value:
        raise SetupError("a value holding '${' cannot be written to a .env file")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def env_text(app: CreatedApp, key_path: Path, api_url: str) -> str:
    """The ``.env`` that ``reviewbot serve`` and ``worker`` read: the App's id, webhook
    secret, key file (absolute) and login, and the API URL when not github.com's."""
    values = {
        APP_ID: str(app.id),
        WEBHOOK_SECRET: app.webhook_secret,
        PRIVATE_KEY_PATH: str(key_path),
        BOT_LOGIN: app.bot_login,
    }
    if api_url != DEFAULT_GITHUB_API_URL:
        values[GITHUB_API_URL] = api_url
    lines = [
        f"# reviewbot settings, written by `reviewbot setup` for the GitHub App {app.slug}",
        f"# ({app.html_url}). Keep it private; variables set in the environment win over it.",
        *(f"{key}={quote_env(value)}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"
