"""reviewbot's own GitHub account, as the web process learns it when it acts as the App.

The webhook rules ignore deliveries sent by reviewbot itself
(:func:`reviewbot.github.events.parse_delivery`); a web process that uses the App's
credentials (``REVIEWBOT_WEB_REACTIONS``) asks GitHub who that is (``GET /app`` as the
App, then ``GET /users/{login}``) instead of relying on a configured login alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from reviewbot.github.app import GitHubApp
from reviewbot.github.data import BotIdentity
from reviewbot.github.errors import GitHubError
from reviewbot.settings.defaults import ACK_TIMEOUT_SECONDS, IDENTITY_RETRY_SECONDS, GitHubSettings
from reviewbot.settings.server import Settings

log = logging.getLogger(__name__)


class IdentityLookup:
    """The App's account for the web process: learned from GitHub once, then cached.

    A call returns None while GitHub cannot say (the configured ``REVIEWBOT_BOT_LOGIN``
    applies meanwhile); after a failure it asks again at most every
    ``retry_seconds``, so a delivery never waits on a GitHub that is down.
    """

    def __init__(
        self,
        settings: Settings,
        retry_seconds: float = IDENTITY_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.app_id is None or settings.private_key is None:
            raise ValueError("learning the App's identity needs its id and private key")
        self.app = GitHubApp(
            settings.app_id,
            settings.private_key,
            settings.github_api_url,
            GitHubSettings(timeout_seconds=ACK_TIMEOUT_SECONDS, attempts=1),
            bot_login=settings.bot_login,
        )
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> BotIdentity | None:
        """The App's account, or None while GitHub cannot be asked (logged)."""
        with self._lock:
            now = self._clock()
            if self._failed_at is not None and now - self._failed_at < self.retry_seconds:
                return None
            try:
                found = self.app.identity()
            except GitHubError as e:
                self._failed_at = now
                log.warning(
                    "could not learn the App's identity from GitHub (asking again in %.0fs): %s",
                    self.retry_seconds,
                    e,
                )
                return None
            self._failed_at = None
            return found
