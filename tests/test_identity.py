"""reviewbot's own account (issue 11, item 1): who it is, and what the web makes of it.

:class:`~reviewbot.github.data.BotIdentity` decides whose words are reviewbot's (pure);
the webhook rules ignore what reviewbot's account sent, by id when known
(:mod:`reviewbot.github.events`); the web process learns the account from the GitHub
stand-in at start and asks again after a failure only now and then
(:mod:`reviewbot.server.identity`); ``REVIEWBOT_BOT_LOGIN`` is an optional override.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import WEBHOOKS
from github_standin import APP_ID, GitHubStandIn, app_key_fixture, github_fixture  # noqa: F401

from reviewbot.github.data import BotIdentity, app_bot_login
from reviewbot.github.events import EventConfig, Ignored, parse_event
from reviewbot.jobs.job import Job
from reviewbot.server.identity import IdentityLookup
from reviewbot.settings.server import Settings, SettingsError

BOT = BotIdentity("reviewbot[bot]", 4242)


@pytest.mark.parametrize(
    ("user", "ours"),
    [
        ({"login": "reviewbot[bot]", "id": 4242, "type": "Bot"}, True),
        ({"login": "ReviewBot[bot]", "id": 4242}, True),  # logins are case-insensitive
        ({"login": "renamed-app[bot]", "id": 4242}, True),  # the id is what stays
        ({"login": "reviewbot[bot]", "id": 7}, False),  # another account with the name
        ({"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}, False),
        ({"login": "reviewbot[bot]"}, True),  # no id given: by login
        ({"login": "reviewbot[bot]", "id": True}, True),  # a JSON true is no id
        ({"login": "", "id": None}, False),
        (None, False),
        ("reviewbot[bot]", False),
    ],
)
def test_only_reviewbots_own_account_is_reviewbot(user: Any, ours: bool) -> None:
    assert BOT.is_author(user) is ours


def test_an_account_known_only_by_login_matches_by_login() -> None:
    override = BotIdentity("machine-user")
    assert override.is_account("Machine-User", 99)
    assert not override.is_account("machine-user2", None)
    assert app_bot_login("reviewbot") == "reviewbot[bot]"


def pr_comment(body: str, sender: dict[str, Any]) -> dict[str, Any]:
    payload = json.loads((WEBHOOKS / "issue_comment.created.with-installation.json").read_text())
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/1"}
    payload["comment"]["body"] = body
    payload["comment"]["author_association"] = "OWNER"
    payload["comment"]["user"] = payload["sender"] = sender
    return payload


def test_the_webhook_ignores_reviewbots_own_account_by_id_and_any_login_case() -> None:
    config = EventConfig(bot_login="reviewbot[bot]", bot_id=4242)
    for sender in (
        {"login": "reviewbot[bot]", "id": 4242, "type": "Bot"},
        {"login": "renamed-app[bot]", "id": 4242, "type": "Bot"},
    ):
        outcome = parse_event("issue_comment", pr_comment("/review", sender), "d", config)
        assert outcome == Ignored("sender is reviewbot itself")
    other = {"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}
    outcome = parse_event("issue_comment", pr_comment("/review", other), "d", config)
    assert outcome == Ignored("sender 'dependabot[bot]' is a bot")


def test_a_configured_login_is_matched_case_insensitively() -> None:
    # reviewbot running as a machine user (a token, not an App): its own comments,
    # whatever case GitHub shows its login in, never run as commands
    config = EventConfig(bot_login="machine-user")
    sender = {"login": "Machine-User", "id": 5, "type": "User"}
    outcome = parse_event("issue_comment", pr_comment("/review", sender), "d", config)
    assert outcome == Ignored("sender is reviewbot itself")
    someone = {"login": "machine-user-2", "id": 6, "type": "User"}
    assert isinstance(
        parse_event("issue_comment", pr_comment("/review", someone), "d", config), Job
    )


def web_settings(github: GitHubStandIn, key: str, **fields: Any) -> Settings:
    return Settings(
        webhook_secrets=("s",), app_id=APP_ID, private_key=key, github_api_url=github.url, **fields
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_web_learns_the_apps_account_once(github: GitHubStandIn, app_key: str) -> None:
    lookup = IdentityLookup(web_settings(github, app_key))
    assert lookup() == lookup() == BotIdentity("reviewbot[bot]", github.bot["id"])
    assert len(github.requests_to("GET", r"^/app$")) == 1


def test_the_web_asks_github_again_only_after_a_while(github: GitHubStandIn, app_key: str) -> None:
    clock = Clock()
    lookup = IdentityLookup(web_settings(github, app_key), retry_seconds=60, clock=clock)
    github.fail("GET", r"^/app$", 503, times=1)
    assert lookup() is None  # GitHub is down: deliveries use the configured login
    clock.now += 30
    assert lookup() is None
    assert len(github.requests_to("GET", r"^/app$")) == 1  # not asked again yet
    clock.now += 31
    assert lookup() == BotIdentity("reviewbot[bot]", github.bot["id"])


def test_the_web_uses_a_configured_login_as_an_override(
    github: GitHubStandIn, app_key: str
) -> None:
    github.add_token("ghp_machine", login="machine-user")
    lookup = IdentityLookup(web_settings(github, app_key, bot_login="machine-user"))
    found = lookup()
    assert found is not None and found.login == "machine-user"
    assert github.requests_to("GET", r"^/app$") == []


def test_the_web_needs_the_apps_credentials_to_ask() -> None:
    with pytest.raises(ValueError, match="id and private key"):
        IdentityLookup(Settings(webhook_secrets=("s",)))


@pytest.mark.parametrize("login", ["my-app[bot]", "machine-user", "A1"])
def test_the_bot_login_override_is_optional_and_checked(login: str) -> None:
    assert Settings.from_env({}).bot_login is None
    assert Settings.from_env({"REVIEWBOT_BOT_LOGIN": login}).bot_login == login


@pytest.mark.parametrize("login", ["not a login", "-leading", "x[bot]y", "a" * 50])
def test_a_malformed_bot_login_is_a_settings_error(login: str) -> None:
    with pytest.raises(SettingsError, match="REVIEWBOT_BOT_LOGIN must be a GitHub login"):
        Settings.from_env({"REVIEWBOT_BOT_LOGIN": login})
