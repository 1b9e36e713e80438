"""The 👀 "received" reaction the web server adds to a command comment at once."""

from __future__ import annotations

from reviewbot.github.app import GitHubApp
from reviewbot.jobs.job import Job
from reviewbot.settings.defaults import ACK_TIMEOUT_SECONDS, REACTION_RECEIVED, GitHubSettings
from reviewbot.settings.server import Settings


class GitHubAcknowledger:
    """Reacts 👀 to a command comment at once, as the GitHub App (one short call).

    Used when the web server has the App's credentials; otherwise the worker
    adds the reaction when it starts the job.
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.app_id is not None and settings.private_key is not None
        self.app = GitHubApp(
            settings.app_id,
            settings.private_key,
            settings.github_api_url,
            GitHubSettings(
                timeout_seconds=ACK_TIMEOUT_SECONDS, attempts=1, seconds_between_writes=0
            ),
        )

    def __call__(self, job: Job) -> None:
        assert job.comment_type is not None and job.comment_id is not None
        with self.app.installation(job.installation_id) as gh:
            gh.add_reaction(job.repo, job.comment_type, job.comment_id, REACTION_RECEIVED)
