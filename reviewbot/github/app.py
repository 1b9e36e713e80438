"""The GitHub App: JWT auth, and clients acting as one of its installations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import Auth

from reviewbot.github.client import GitHubClient, make_github
from reviewbot.settings.defaults import DEFAULT_GITHUB_API_URL, GitHubSettings

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
    """A GitHub App: hands out clients authenticated as one of its installations."""

    def __init__(
        self,
        app_id: int,
        private_key: str,
        base_url: str = DEFAULT_GITHUB_API_URL,
        settings: GitHubSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_private_key(private_key)
        self.app_id = app_id
        self.base_url = base_url.rstrip("/")
        self.settings = settings or _DEFAULT_SETTINGS
        self._sleep = sleep
        self._app_auth = Auth.AppAuth(app_id, private_key)
        self._auths: dict[int, _SharedInstallationAuth] = {}
        self._lock = threading.Lock()

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
        """A client acting as ``installation_id`` (its token is cached until expiry)."""
        gh = make_github(self._auth(installation_id), self.base_url, self.settings)
        return GitHubClient(gh, self.settings, self._sleep)
