"""reviewbot's hidden HTML-comment markers (pure): what was posted, and for what.

- a review body ends with ``<!-- reviewbot:{kind}:{head_sha}:{fingerprint} -->``
  (``fingerprint``: a short hash over the sorted fingerprints of the review's new
  findings), so a rerun for the same kind and head can see it was posted;
- every finding, inline or listed in a review body, carries
  ``<!-- reviewbot:finding:{fingerprint} -->``, so a finding is never posted twice;
- an answer to a command carries ``<!-- reviewbot:reply:{comment id} -->``, and the
  one permission-denied reply a user gets on a PR ``<!-- reviewbot:denied:{login} -->``;
- the answer to /pause, /ignore or /resume carries ``<!-- reviewbot:state:{state} -->``:
  the last one reviewbot wrote on a pull request says whether it is reviewed
  automatically (:func:`automatic_state`).

Anyone can type a marker into a comment: a marker counts only in a review or comment
that reviewbot's own account wrote (:class:`reviewbot.github.data.BotIdentity`; the
GitHub edge reads markers from those alone).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from reviewbot.settings.defaults import REVIEW_FINGERPRINT_CHARS, REVIEWBOT_MARKER_PREFIX

_P = re.escape(REVIEWBOT_MARKER_PREFIX)
_FINDING_MARKER = re.compile(_P + r"finding:([0-9a-f]{6,64}) -->")
_REVIEW_MARKER = re.compile(_P + r"([a-z]{1,20}):([0-9a-f]{7,64}):([0-9a-f]{6,64}) -->")
_REPLY_MARKER = re.compile(_P + r"reply:(\d{1,20}) -->")
_DENIED_MARKER = re.compile(_P + r"denied:([A-Za-z0-9][A-Za-z0-9_.\[\]-]{0,60}) -->")
_STATE_MARKER = re.compile(_P + r"state:(paused|ignored|active) -->")
_ANY_MARKER = re.compile(_P + r"[^>]{0,200}-->")

#: What /pause, /ignore and /resume set: automatic reviews of a pull request stop
#: (``paused``), never happen (``ignored``), or happen (``active``, the default).
AUTOMATIC_STATES = ("active", "paused", "ignored")


class ReviewMarker(NamedTuple):
    kind: str
    head_sha: str
    fingerprint: str


@dataclass(frozen=True)
class Markers:
    """What the hidden markers in some texts say was already posted."""

    findings: frozenset[str] = frozenset()
    reviews: frozenset[ReviewMarker] = frozenset()
    replies: frozenset[int] = frozenset()
    """Ids of the comments (slash commands) reviewbot has answered."""
    denied: frozenset[str] = frozenset()
    """Logins told once on this PR that their command needs write permission."""

    def __or__(self, other: Markers) -> Markers:
        return Markers(
            self.findings | other.findings,
            self.reviews | other.reviews,
            self.replies | other.replies,
            self.denied | other.denied,
        )


def finding_marker(fingerprint: str) -> str:
    return f"<!-- reviewbot:finding:{fingerprint} -->"


def reply_marker(comment_id: int) -> str:
    """Marks a text (reply or review) as the answer to command comment ``comment_id``."""
    return f"<!-- reviewbot:reply:{int(comment_id)} -->"


def denied_marker(login: str) -> str:
    """Marks the one permission-denied reply ``login`` gets on a pull request."""
    if not _DENIED_MARKER.fullmatch(f"<!-- reviewbot:denied:{login} -->"):
        raise ValueError(f"not a GitHub login: {login!r}")
    return f"<!-- reviewbot:denied:{login} -->"


def state_marker(state: str) -> str:
    """Marks reviewbot's answer to /pause, /ignore or /resume with the state it set."""
    if state not in AUTOMATIC_STATES:
        raise ValueError(f"not an automatic-review state: {state!r}")
    return f"<!-- reviewbot:state:{state} -->"


def automatic_state(texts: Iterable[str]) -> str:
    """The state the last state marker in ``texts`` set (``active`` when none did).

    ``texts``: reviewbot's own comments on a pull request, oldest first (the GitHub
    edge reads them from reviewbot's account alone: anyone can type a marker).
    """
    state = "active"
    for text in texts:
        found = _STATE_MARKER.findall(text or "")
        if found:
            state = found[-1]
    return state


def review_marker(kind: str, head_sha: str, fingerprint: str) -> str:
    return f"{review_marker_prefix(kind, head_sha)}{fingerprint} -->"


def review_marker_prefix(kind: str, head_sha: str) -> str:
    """The start of the review marker: enough to find a review of ``kind`` at ``head_sha``."""
    return f"<!-- reviewbot:{kind}:{head_sha}:"


def review_fingerprint(fingerprints: Iterable[str]) -> str:
    """A short hash over the sorted finding fingerprints of a review."""
    joined = "\n".join(sorted(set(fingerprints)))
    return hashlib.sha256(joined.encode()).hexdigest()[:REVIEW_FINGERPRINT_CHARS]


def parse_markers(text: str | None) -> Markers:
    """The finding fingerprints and review markers hidden in ``text``."""
    if not text:
        return Markers()
    findings = frozenset(_FINDING_MARKER.findall(text))
    reviews = frozenset(ReviewMarker(*m) for m in _REVIEW_MARKER.findall(text))
    replies = frozenset(int(m) for m in _REPLY_MARKER.findall(text))
    denied = frozenset(_DENIED_MARKER.findall(text))
    return Markers(findings, reviews, replies, denied)


def strip_markers(text: str) -> str:
    """``text`` without reviewbot's hidden markers."""
    return _ANY_MARKER.sub("", text).strip()
