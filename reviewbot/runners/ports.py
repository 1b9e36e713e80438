"""What the job runners need of the outside world, as Protocols, and what a job did.

The runners are written against these ports only: :class:`GitHubPort` (production:
:class:`reviewbot.github.client.GitHubClient`; tests: an in-memory GitHub) and
:class:`ModelPort` (production: :class:`reviewbot.model.generation.Engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from reviewbot.github.data import CommentInfo, PullInfo
from reviewbot.github.markers import Markers
from reviewbot.github.payload import ReviewPayload
from reviewbot.review.prompts import Renderer
from reviewbot.settings.repo import RepoConfig


class GitHubPort(Protocol):
    """The GitHub calls a job makes, as one installation of the App.

    Failures are :class:`reviewbot.github.errors.GitHubError` (shown to users) or its
    :class:`~reviewbot.github.errors.TransientGitHubError` (the queue retries later).
    """

    # -- the pull request --
    def pull(self, repo: str, number: int) -> PullInfo: ...
    def pull_diff(self, repo: str, number: int) -> str: ...
    def compare_diff(self, repo: str, base_sha: str, head_sha: str) -> str: ...
    def repo_config(self, repo: str) -> RepoConfig: ...
    def file_text(self, repo: str, path: str, ref: str) -> str: ...

    # -- what was said before --
    def markers(self, repo: str, number: int, conversation: bool = False) -> Markers: ...
    def review_comments(self, repo: str, number: int) -> list[CommentInfo]: ...
    def issue_comments(self, repo: str, number: int) -> list[CommentInfo]: ...
    def review_thread(self, repo: str, number: int, comment_id: int) -> list[CommentInfo]: ...
    def unresolved_threads(self, repo: str, number: int) -> set[int]: ...
    def role(self, repo: str, login: str) -> str: ...

    # -- what a job posts --
    def post_review(self, repo: str, number: int, payload: ReviewPayload) -> int: ...
    def reply(
        self, repo: str, number: int, comment_type: str, comment_id: int, body: str
    ) -> int: ...
    def add_reaction(self, repo: str, comment_type: str, comment_id: int, content: str) -> int: ...
    def remove_reaction(
        self, repo: str, comment_type: str, comment_id: int, reaction_id: int
    ) -> None: ...
    def swap_reaction(
        self, repo: str, comment_type: str, comment_id: int, old: str, new: str | None
    ) -> None: ...
    def start_check_run(self, repo: str, head_sha: str) -> int: ...
    def complete_check_run(
        self, repo: str, check_id: int, conclusion: str, title: str, summary: str
    ) -> None: ...


class ModelPort(Protocol):
    """What the runners need of a model engine: its prompt renderer and generation."""

    renderer: Renderer

    def generate(self, prompts: list[str]) -> list[str]: ...


#: Returns the model for a repository's adapter name (None: the server default).
EngineProvider = Callable[[str | None], ModelPort]


@dataclass(frozen=True)
class Outcome:
    """What a job did, for logs and the Celery result.

    ``status``: posted | answered | nothing-new | already-reviewed | already-answered |
    superseded | skipped | denied | failed.
    """

    status: str
    review_id: int | None = None
    detail: str = ""
