"""Refreshing the outcome labels of posted findings from GitHub, within a request budget.

For each pull request with unsettled findings (least recently checked first), the
runner reads reviewbot's inline comments (by their finding markers, reviewbot's own
account only), the reactions on them, the replies in their threads, the threads'
resolution, and what later commits did to the anchored lines (the interdiff from the
reviewed head to the current head, the file at the current head where a suggestion
may have been committed); :func:`reviewbot.learning.labels.label_finding` decides.
Whose signals count is the repository's word: a person with write access or more
(bots never). A pull request closed for longer than
:data:`~reviewbot.settings.defaults.OUTCOME_SETTLE_SECONDS` settles (no more refreshes).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from reviewbot.github.data import PullInfo
from reviewbot.github.errors import GitHubError, TransientGitHubError
from reviewbot.github.markers import parse_markers
from reviewbot.learning.labels import LaterCode, Signal, label_finding
from reviewbot.learning.records import LabelledFinding, OutcomeLabel
from reviewbot.review.diffplan import LineChanges, line_changes
from reviewbot.review.units import DiffError
from reviewbot.runners.ports import FindingStore, GitHubPort
from reviewbot.settings.defaults import (
    BOT_LOGIN_SUFFIX,
    OUTCOME_REFRESH_MAX_REQUESTS,
    OUTCOME_SETTLE_SECONDS,
    TEAM_PERMISSIONS,
)

log = logging.getLogger(__name__)


class BudgetSpent(Exception):
    """The refresh made as many GitHub requests as it may."""


class CountedGitHub:
    """A :class:`GitHubPort` that counts calls and refuses them past ``limit``."""

    def __init__(self, gh: GitHubPort, limit: int) -> None:
        self._gh = gh
        self.limit = limit
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._gh, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.calls >= self.limit:
                raise BudgetSpent(f"{self.limit} GitHub requests made")
            self.calls += 1
            return target(*args, **kwargs)

        return counted


@dataclass
class RefreshReport:
    """What a refresh did: pull requests refreshed, labels now, requests made."""

    pulls: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    stopped: str = ""
    """Why it stopped before every pull request was refreshed ("" if it did not)."""
    failed: list[str] = field(default_factory=list)
    """Pull requests that could not be refreshed, with why."""

    def summary(self) -> str:
        counts = ", ".join(f"{n} {label}" for label, n in sorted(self.labels.items())) or "none"
        text = f"refreshed {self.pulls} pull request(s): {counts}; {self.requests} GitHub requests"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
        if self.failed:
            text += f"; failed: {'; '.join(self.failed)}"
        return text


def refresh_outcomes(
    gh: GitHubPort,
    store: FindingStore,
    *,
    installation_id: int | None = None,
    repo: str | None = None,
    max_requests: int = OUTCOME_REFRESH_MAX_REQUESTS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RefreshReport:
    """Refresh the labels of the pull requests of one installation (or one repository),
    making at most ``max_requests`` GitHub calls; the ones not reached wait for the next
    run (they stay first in line). Transient GitHub errors propagate (the queue retries)."""
    counted = CountedGitHub(gh, max_requests)
    report = RefreshReport()
    pulls = store.pulls_to_refresh(installation_id=installation_id, repo=repo, limit=max_requests)
    for name, number in pulls:
        try:
            labels = refresh_pull(counted, store, name, number, now())  # type: ignore[arg-type]
        except BudgetSpent as e:
            report.stopped = f"the budget of {e} (the rest waits for the next run)"
            break
        except TransientGitHubError:
            raise
        except GitHubError as e:
            log.warning("outcomes of %s#%d: %s", name, number, e)
            report.failed.append(f"{name}#{number}: {e}")
            continue
        report.pulls += 1
        report.labels.update(labels)
    report.requests = counted.calls
    log.info("outcomes: %s", report.summary())
    return report


def refresh_pull(
    gh: GitHubPort, store: FindingStore, repo: str, number: int, now: datetime
) -> Counter[str]:
    """Label every finding posted on one pull request; returns the labels' counts."""
    found = store.findings(repo, number)
    if not found:
        return Counter()
    pull = gh.pull(repo, number)
    comments = gh.review_comments(repo, number)
    roots: dict[str, int] = {}
    for c in comments:
        if c.by_reviewbot and c.in_reply_to is None:
            for fp in parse_markers(c.body).findings:
                roots.setdefault(fp, c.id)
    team = _Team(gh, repo)
    threads = {t.root_id: t for t in gh.review_threads(repo, number)}
    later = _LaterCode(gh, repo, pull)
    outcomes: dict[str, tuple[OutcomeLabel, int | None]] = {}
    for item in found:
        comment_id = roots.get(item.finding.fingerprint, item.comment_id)
        signals: list[Signal] = []
        if comment_id is not None:
            for r in gh.reactions(repo, "review", comment_id):
                signals.append(Signal(r.content, r.login, team.counts(r.login, r.user_type)))
            for c in comments:
                if c.in_reply_to == comment_id and not c.by_reviewbot:
                    signals.append(Signal("reply", c.author, team.counts(c.author, c.author_type)))
            thread = threads.get(comment_id)
            if thread is not None and thread.resolved and thread.resolved_by:
                by = thread.resolved_by
                signals.append(Signal("resolved", by, team.counts(by, "User")))
        label = label_finding(item.finding, signals, later.of(item), pull.merged)
        outcomes[item.finding.fingerprint] = (label, comment_id)
    store.set_outcomes(repo, number, outcomes, settled=_settled(pull, now), checked_at=now)
    return Counter(label.label for label, _ in outcomes.values())


def _settled(pull: PullInfo, now: datetime) -> bool:
    """A pull request closed long enough ago needs no more refreshes."""
    if pull.state != "closed" or pull.closed_at is None:
        return False
    closed = pull.closed_at if pull.closed_at.tzinfo else pull.closed_at.replace(tzinfo=UTC)
    return now - closed > timedelta(seconds=OUTCOME_SETTLE_SECONDS)


class _Team:
    """Whether a login's signals count: write access or more on the repository, no bot
    (looked up once per login)."""

    def __init__(self, gh: GitHubPort, repo: str) -> None:
        self._gh, self._repo = gh, repo
        self._known: dict[str, bool] = {}

    def counts(self, login: str, user_type: str) -> bool:
        if not login or user_type == "Bot" or login.endswith(BOT_LOGIN_SUFFIX):
            return False
        if login not in self._known:
            self._known[login] = self._gh.role(self._repo, login) in TEAM_PERMISSIONS
        return self._known[login]


class _LaterCode:
    """What the commits after each reviewed head did to a finding's file (one compare
    per reviewed head, one file read per file with a suggestion)."""

    def __init__(self, gh: GitHubPort, repo: str, pull: PullInfo) -> None:
        self._gh, self._repo, self._head = gh, repo, pull.head_sha
        self._diffs: dict[str, dict[str, LineChanges] | None] = {}
        self._texts: dict[str, str | None] = {}

    def of(self, item: LabelledFinding) -> LaterCode:
        f = item.finding
        if f.head_sha == self._head:
            return LaterCode(self._head)
        changes = self._changes(f.head_sha)
        if changes is None:
            return LaterCode(self._head, known=False)
        change = changes.get(f.path)
        text = None
        if change is not None and change.new_path is not None and f.suggestion is not None:
            text = self._text(change.new_path)
        return LaterCode(self._head, change, text)

    def _changes(self, since: str) -> dict[str, LineChanges] | None:
        if since not in self._diffs:
            try:
                self._diffs[since] = line_changes(
                    self._gh.compare_diff(self._repo, since, self._head)
                )
            except TransientGitHubError:
                raise
            except (GitHubError, DiffError) as e:  # history rewritten: the old head is gone
                log.info("%s: no interdiff %s..%s (%s)", self._repo, since[:7], self._head[:7], e)
                self._diffs[since] = None
        return self._diffs[since]

    def _text(self, path: str) -> str | None:
        if path not in self._texts:
            try:
                self._texts[path] = self._gh.file_text(self._repo, path, self._head)
            except TransientGitHubError:
                raise
            except GitHubError as e:
                log.info("%s: cannot read %s at %s (%s)", self._repo, path, self._head[:7], e)
                self._texts[path] = None
        return self._texts[path]
