"""/describe's section of a pull request's body (pure): written between hidden start
and end markers, so that the author's text is never touched and a rerun replaces
only reviewbot's own section.

The end marker carries a hash of the section's text: a section counts as reviewbot's
only while its text is exactly what reviewbot wrote. A section someone edited (or
markers someone typed around their own text) is left alone and a new section is
appended after the body.
"""

from __future__ import annotations

import hashlib
import re

from reviewbot.settings.defaults import REVIEWBOT_MARKER_PREFIX

START = f"{REVIEWBOT_MARKER_PREFIX}describe:start -->"
_END = re.compile(re.escape(REVIEWBOT_MARKER_PREFIX) + r"describe:end:([0-9a-f]{16}) -->")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def section(text: str) -> str:
    """``text`` (reviewbot's description, already inert) between the markers."""
    return f"{START}\n{text}\n{REVIEWBOT_MARKER_PREFIX}describe:end:{_digest(text)} -->"


def own_sections(body: str) -> list[tuple[int, int]]:
    """The spans of ``body`` that are reviewbot's unedited sections (linear in the body:
    each end marker pairs with the nearest start marker before it)."""
    spans = []
    floor = 0
    for end in _END.finditer(body):
        start = body.rfind(START, floor, end.start())
        if start < 0:
            continue
        inner = body[start + len(START) : end.start()].replace("\r\n", "\n")
        if inner.startswith("\n") and inner.endswith("\n") and _digest(inner[1:-1]) == end[1]:
            spans.append((start, end.end()))
        floor = end.end()
    return spans


def with_description(body: str | None, text: str) -> str:
    """``body`` with reviewbot's section holding ``text``: the last unedited section is
    replaced; without one, the section is appended after the author's text (whose
    characters, line endings included, are kept as they are)."""
    current = body or ""
    new = section(text)
    spans = own_sections(current)
    if spans:
        start, end = spans[-1]
        return current[:start] + new + current[end:]
    return f"{current}\n\n{new}" if current.strip() else new
