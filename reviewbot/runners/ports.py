"""What the job runners need of the outside world, as Protocols, and what a job did.

The runners are written against these ports only: :class:`GitHubPort` (production:
:class:`reviewbot.github.client.GitHubClient`; tests: an in-memory GitHub),
:class:`ModelPort` (production: :class:`reviewbot.model.generation.Engine`) and
:class:`PullLocks` (production: Redis, ``worker.locks``; default: :class:`LocalPullLocks`)
and :class:`FindingStore` (production: SQL, :mod:`reviewbot.store`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from reviewbot.github.data import CommentInfo, PullInfo, ReactionInfo, ThreadInfo
from reviewbot.github.errors import TransientGitHubError
from reviewbot.github.markers import Markers
from reviewbot.github.payload import ReviewPayload
from reviewbot.learning.records import LabelledFinding, OutcomeLabel, PostedFinding
from reviewbot.review.confidence import Score
from reviewbot.review.prompts import Renderer
from reviewbot.settings.defaults import ReviewOptions
from reviewbot.settings.repo import RepoConfig

log = logging.getLogger(__name__)


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

    # -- what was said before (only reviewbot's own account's markers and comments count:
    # ``markers`` reads its texts alone, ``CommentInfo.by_reviewbot`` marks its comments) --
    def markers(self, repo: str, number: int, conversation: bool = False) -> Markers: ...
    def review_comments(self, repo: str, number: int) -> list[CommentInfo]: ...
    def issue_comments(self, repo: str, number: int) -> list[CommentInfo]: ...
    def review_thread(self, repo: str, number: int, comment_id: int) -> list[CommentInfo]: ...
    def unresolved_threads(self, repo: str, number: int) -> set[int]: ...
    def review_threads(self, repo: str, number: int) -> list[ThreadInfo]: ...
    def reactions(self, repo: str, comment_type: str, comment_id: int) -> list[ReactionInfo]: ...
    def resolve_thread(self, repo: str, thread_id: str) -> None: ...
    def update_pull_body(self, repo: str, number: int, body: str) -> None: ...
    def post_comment(self, repo: str, number: int, body: str, marker: str) -> int: ...
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
    def find_check_run(self, repo: str, head_sha: str, external_id: str) -> int | None: ...
    def start_check_run(self, repo: str, head_sha: str, external_id: str) -> int: ...
    def complete_check_run(
        self, repo: str, check_id: int, conclusion: str, title: str, summary: str
    ) -> None: ...


class FindingStore(Protocol):
    """Where posted findings and their outcome labels are kept (production:
    :class:`reviewbot.store.sql.SqlFindingStore`, SQLite or PostgreSQL).

    Every method may raise :class:`~reviewbot.learning.records.StoreError`; the review
    runner logs it and posts
    anyway (nothing but the figures depends on the database being up).
    """

    def record(self, findings: Sequence[PostedFinding]) -> int:
        """Keep ``findings`` (idempotent by repository, PR and fingerprint); returns how
        many were new."""
        ...

    def findings(self, repo: str, pr_number: int) -> list[LabelledFinding]:
        """The findings posted on one pull request, with their current labels."""
        ...

    def set_outcomes(
        self,
        repo: str,
        pr_number: int,
        outcomes: Mapping[str, tuple[OutcomeLabel, int | None]],
        settled: bool,
        checked_at: datetime,
    ) -> None:
        """Store each fingerprint's label and comment id; ``settled``: the pull request
        needs no more refreshes."""
        ...

    def pulls_to_refresh(
        self, installation_id: int | None = None, repo: str | None = None, limit: int = 100
    ) -> list[tuple[str, int]]:
        """(repo, PR) with unsettled findings, least recently checked first."""
        ...

    def installations(self) -> list[int]:
        """The installations with unsettled findings (the beat refreshes each)."""
        ...

    def labelled(self, repo: str, since: datetime | None = None) -> list[LabelledFinding]:
        """Every finding posted on ``repo`` (since ``since``), with its label."""
        ...

    def rejected(self, repo: str) -> list[PostedFinding]:
        """The findings the team rejected on ``repo`` (what suppression matches)."""
        ...


class ModelPort(Protocol):
    """What the runners need of a model engine: its prompt renderer, generation, and
    scoring (the mean log-probability per token of each completion given its prompt,
    teacher-forced: what a finding's confidence is computed from).

    A model may also have ``generate_copying(prompts)`` (same contract as ``generate``,
    for revisions; the Engine's uses prompt lookup): the pipeline then generates
    revisions with it (:func:`reviewbot.review.pipeline.copying`). A model whose
    ``can_score`` is False cannot score (see :func:`rating`)."""

    renderer: Renderer
    model_name: str
    """The base model (hub id, directory or ``smollm2``): recorded with posted findings."""
    adapter: str | None
    """The adapter directory on top of it (None: the base alone)."""

    def generate(self, prompts: list[str]) -> list[str]: ...
    def score(self, prompts: list[str], completions: list[str]) -> list[float]: ...


def rating(model: ModelPort, options: ReviewOptions) -> tuple[Score | None, ReviewOptions]:
    """How a job rates findings with ``model``: its ``score``, under ``options``.

    A model whose ``can_score`` is False (an inference server that returns no
    log-probabilities) leaves findings unrated, so no confidence threshold can apply:
    the options' threshold becomes 0, logged, rather than every finding being dropped.
    """
    if getattr(model, "can_score", True):
        return model.score, options
    if options.min_confidence > 0:
        log.warning(
            "%s cannot score: findings are not rated, the confidence threshold %.2f does not apply",
            model.model_name,
            options.min_confidence,
        )
    return None, replace(options, min_confidence=0.0)


class PullLocks(Protocol):
    """One lock per pull request, shared by every worker.

    A job holds it from re-reading reviewbot's markers to posting (a review or an
    answer), never while the model generates: two jobs on the same pull request
    (an automatic review and a ``/review``, a requeued copy) post one after the
    other, and the second sees what the first posted. ``hold`` raises
    :class:`PullBusy` when the lock cannot be had in time.
    """

    def hold(self, repo: str, number: int) -> AbstractContextManager[None]: ...


class PullBusy(TransientGitHubError):
    """Another job held the pull request's lock too long; the queue retries the job later."""


class LocalPullLocks:
    """:class:`PullLocks` within one process (threads): for the CLI and tests; workers
    on several processes or machines share a Redis one instead."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, int], threading.Lock] = {}

    @contextmanager
    def hold(self, repo: str, number: int) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((repo, number), threading.Lock())
        with lock:
            yield


#: The runners' locks when the caller gives none: this process only (the CLI, tests).
PROCESS_LOCKS = LocalPullLocks()


#: Returns the model for a repository's adapter name (None: the server default).
EngineProvider = Callable[[str | None], ModelPort]


@dataclass(frozen=True)
class Outcome:
    """What a job did, for logs and the Celery result.

    ``status``: posted | answered | nothing-new | already-reviewed | already-answered |
    already-summarised | superseded | skipped | denied | failed | gave-up.
    (already-reviewed / already-answered: also when another job posted first while
    this one generated.)
    """

    status: str
    review_id: int | None = None
    detail: str = ""
    timings: Mapping[str, float] = field(default_factory=dict, compare=False)
    """Seconds per stage of a review job (fetch, plan, model, generate, post), for the
    worker's metrics; empty for jobs that reviewed nothing."""
