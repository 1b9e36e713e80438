"""The GitHub App: JWT auth, its own identity, and clients acting as one of its installations."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import Auth, Github

from reviewbot.github.client import GitHubClient, make_github
from reviewbot.github.data import BotIdentity, app_bot_login
from reviewbot.settings.defaults import DEFAULT_GITHUB_API_URL, GitHubSettings

log = logging.getLogger(__name__)

_DEFAULT_SETTINGS = GitHubSettings()


def _check_private_key(private_key: str) -> None:
    try:
        load_pem_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("the GitHub App private key is not an unencrypted PEM key") from None


class _SharedInstallationAuth(Auth.AppInstallationAuth):
    """One installation's auth, shared by all its clients.

    PyGithub's AppInstallationAuth keeps its token until shortly before it
    expires; sharing one instance per installation (and locking the refresh)
    makes every client of that installation reuse one token.
    """

    def __init__(self, app_auth: Auth.AppAuth, installation_id: int) -> None:
        super().__init__(app_auth, installation_id)
        self._token_lock = threading.Lock()

    @property
    def token(self) -> str:
        with self._token_lock:
            return super().token


class GitHubApp:
    """A GitHub App: hands out clients authenticated as one of its installations.

    Its own account (:meth:`identity`: what counts as reviewbot's on GitHub) is
    learned from GitHub once per process: the slug from ``GET /app`` (as the App) gives
    the bot's login ``{slug}[bot]``, and ``GET /users/{login}`` its user id.
    ``bot_login`` overrides the login (the id is still looked up).
    """

    def __init__(
        self,
        app_id: int,
        private_key: str,
        base_url: str = DEFAULT_GITHUB_API_URL,
        settings: GitHubSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        bot_login: str | None = None,
    ) -> None:
        _check_private_key(private_key)
        self.app_id = app_id
        self.base_url = base_url.rstrip("/")
        self.settings = settings or _DEFAULT_SETTINGS
        self.bot_login = bot_login
        self._sleep = sleep
        self._app_auth = Auth.AppAuth(app_id, private_key)
        self._auths: dict[int, _SharedInstallationAuth] = {}
        self._lock = threading.Lock()
        self._identity: BotIdentity | None = None
        self._identity_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, base_url={self.base_url!r})"

    def _auth(self, installation_id: int) -> _SharedInstallationAuth:
        with self._lock:
            auth = self._auths.get(installation_id)
            if auth is None:
                auth = _SharedInstallationAuth(self._app_auth, installation_id)
                self._auths[installation_id] = auth
            return auth

    def installation(self, installation_id: int) -> GitHubClient:
        """A client acting as ``installation_id`` (its token is cached until expiry).

        It learns the App's identity (:meth:`identity`) when it first needs it.
        """
        return GitHubClient(
            self._installation_github(installation_id),
            self.settings,
            self._sleep,
            lambda: self.identity(installation_id),
        )

    def _installation_github(self, installation_id: int) -> Github:
        return make_github(self._auth(installation_id), self.base_url, self.settings)

    def identity(self, installation_id: int | None = None) -> BotIdentity:
        """The App's own account: ``{slug}[bot]`` (``GET /app``) and its user id; cached.

        The user is looked up with ``installation_id``'s token, or without a token
        when None (GitHub serves ``GET /users/{login}`` to anyone). Errors are raised
        (:class:`~reviewbot.github.errors.GitHubError`) and nothing is cached, so the
        next call asks again.
        """
        with self._identity_lock:
            if self._identity is None:
                self._identity = self._learn_identity(installation_id)
            return self._identity

    def app_login(self) -> str:
        """The login GitHub gives the App's bot: ``{slug}[bot]`` from ``GET /app`` (as the
        App, with a JWT: this checks the App id and the private key too)."""
        as_app = make_github(self._app_auth, self.base_url, self.settings)
        with GitHubClient(as_app, self.settings, self._sleep) as client:
            return app_bot_login(client.app_slug())

    def _learn_identity(self, installation_id: int | None) -> BotIdentity:
        login = self.bot_login
        if login is None:
            login = self.app_login()
        if installation_id is None:
            gh = make_github(None, self.base_url, self.settings)
        else:
            gh = self._installation_github(installation_id)
        with GitHubClient(gh, self.settings, self._sleep) as client:
            found = client.account(login)
        source = "the configured bot login" if self.bot_login else "GET /app"
        log.info("reviewbot is %s (user id %s, from %s)", found.login, found.id, source)
        return found
