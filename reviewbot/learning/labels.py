"""The outcome of a posted finding, from what GitHub shows of it (pure).

The GitHub edge gathers, for each finding reviewbot posted, the reactions on its
comment, the replies in its thread, whether and by whom the thread was resolved, and
what later commits did to the anchored lines (:class:`LaterCode`, from the interdiff
between the reviewed head and the pull request's current head). Only signals of the
team count (:attr:`Signal.team`: the repository's owners, members and collaborators;
never a bot). Then :func:`label_finding` decides:

- ``accepted``: its suggestion was committed (the later file holds the suggested lines
  where the anchored lines moved to); or a team member reacted 👍 (and nobody of the
  team 👎); or the anchored lines changed and the thread was resolved;
- ``rejected``: a team member reacted 👎 (and nobody of the team 👍); or the thread was
  resolved with the anchored lines unchanged; or a team member replied and the pull
  request merged without a change there;
- ``unknown`` otherwise (still open, no signal, or signals that contradict).

The label carries every signal that supports it (:class:`~reviewbot.learning.records.Evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from reviewbot.learning.records import UNKNOWN, Evidence, OutcomeLabel, PostedFinding
from reviewbot.review.diffplan import LineChanges

#: How far (lines) from where the anchored lines moved a committed suggestion is looked for.
_SUGGESTION_SLACK = 3


@dataclass(frozen=True)
class Signal:
    """One act of a person on a finding's thread: a reaction (its content: ``+1``,
    ``-1``…), a ``reply`` or ``resolved``; ``team``: the person is of the team."""

    kind: str
    by: str
    team: bool


@dataclass(frozen=True)
class LaterCode:
    """What became of the finding's file after the reviewed head.

    ``head_sha``: the pull request's current (or final) head. ``changes``: what the
    interdiff did to the file (None: the file was not touched). ``text``: the file at
    ``head_sha`` (None: not read, or gone). ``known``: False when the interdiff could
    not be had (history rewritten): nothing is said about the code then.
    """

    head_sha: str
    changes: LineChanges | None = None
    text: str | None = None
    known: bool = True


class Fate(Enum):
    """What later commits did to a finding's anchored lines."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    SUGGESTION_COMMITTED = "suggestion-committed"
    NOT_KNOWN = "not known"


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]


def mapped_line(line: int, changes: LineChanges) -> int:
    """Where old line ``line`` (unchanged) is after the change: shifted by the lines
    added and removed before it."""
    before_added = sum(1 for k in changes.inserted_after if k < line)
    before_removed = sum(1 for r in changes.removed if r < line)
    return line + before_added - before_removed


def fate_of(finding: PostedFinding, later: LaterCode | None) -> Fate:
    """What later commits did to the lines ``finding`` is anchored on (RIGHT side;
    a comment on removed lines cannot change later: UNCHANGED)."""
    if later is None or later.head_sha == finding.head_sha or finding.side != "RIGHT":
        return Fate.UNCHANGED
    if not later.known:
        return Fate.NOT_KNOWN
    changes = later.changes
    if changes is None:
        return Fate.UNCHANGED
    if changes.new_path is None:
        return Fate.CHANGED
    first, last = finding.first_line, finding.line
    touched = any(first <= r <= last for r in changes.removed) or any(
        first <= k < last for k in changes.inserted_after
    )
    if not touched:
        return Fate.UNCHANGED
    suggestion, text = finding.suggestion, later.text
    if (
        suggestion is not None
        and text is not None
        and _holds(text, suggestion, mapped_line(first, changes))
    ):
        return Fate.SUGGESTION_COMMITTED
    return Fate.CHANGED


def _holds(text: str, suggestion: str, at: int) -> bool:
    """Whether ``text`` has the suggested lines starting at line ``at`` (or a few lines
    from it), trailing whitespace ignored. An empty suggestion (delete the lines) holds
    when the lines were removed: the caller saw the change."""
    wanted = _lines(suggestion.removesuffix("\n"))
    if wanted == [""]:
        return True
    lines = _lines(text)
    for start in sorted(
        range(at - _SUGGESTION_SLACK, at + _SUGGESTION_SLACK + 1), key=lambda s: abs(s - at)
    ):
        if start >= 1 and lines[start - 1 : start - 1 + len(wanted)] == wanted:
            return True
    return False


def label_finding(
    finding: PostedFinding,
    signals: Sequence[Signal],
    later: LaterCode | None,
    merged: bool,
) -> OutcomeLabel:
    """The outcome of ``finding`` (module docstring). ``signals``: what people did on
    its thread (only the team's count); ``later``: the code after the reviewed head;
    ``merged``: the pull request was merged."""
    fate = fate_of(finding, later)
    commit = later.head_sha if later is not None else None
    if fate is Fate.SUGGESTION_COMMITTED:
        return OutcomeLabel("accepted", (Evidence("suggestion-committed", commit=commit),))
    team = [s for s in signals if s.team]
    ups = [s for s in team if s.kind == "+1"]
    downs = [s for s in team if s.kind == "-1"]
    resolved = [s for s in team if s.kind == "resolved"]
    replies = [s for s in team if s.kind == "reply"]
    accepted: list[Evidence] = [Evidence("thumbs-up", by=s.by) for s in ups]
    rejected: list[Evidence] = [Evidence("thumbs-down", by=s.by) for s in downs]
    for s in resolved:
        if fate is Fate.CHANGED:
            accepted.append(Evidence("changed-and-resolved", by=s.by, commit=commit))
        elif fate is Fate.UNCHANGED:
            rejected.append(Evidence("resolved-unchanged", by=s.by, commit=commit))
    if merged and fate is Fate.UNCHANGED:
        rejected += [Evidence("replied-merged-unchanged", by=s.by, commit=commit) for s in replies]
    if ups and downs:  # the team disagrees: only what the thread and the code say decides
        accepted = [e for e in accepted if e.signal != "thumbs-up"]
        rejected = [e for e in rejected if e.signal != "thumbs-down"]
    if ups and not downs:
        return OutcomeLabel("accepted", tuple(accepted))
    if downs and not ups:
        return OutcomeLabel("rejected", tuple(rejected))
    if accepted and not rejected:
        return OutcomeLabel("accepted", tuple(accepted))
    if rejected and not accepted:
        return OutcomeLabel("rejected", tuple(rejected))
    return UNKNOWN
