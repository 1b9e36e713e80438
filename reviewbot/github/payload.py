"""Turn a :class:`~reviewbot.review.findings.Review` into one GitHub review (pure, no IO).

The review carries reviewbot's hidden markers (:mod:`reviewbot.github.markers`), so
that a rerun posts nothing twice. When there is nothing new to say,
:func:`build_review_payload` returns None (see :func:`_worth_posting` for the rule).
A comment GitHub cannot place on the diff moves into the review body
(:func:`unplaceable_comments` finds which).

Everything here that is not reviewbot's own text is made inert at this edge
(:mod:`reviewbot.review.markdown`): the summary, comment bodies (an inline one
keeps only the apply-checked suggestion of its comment), paths (as code spans),
skip reasons (they quote paths and repository config values). The hidden
markers are added after that, so they are the only ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from reviewbot.github.markers import finding_marker, reply_marker, review_fingerprint, review_marker
from reviewbot.jobs.job import REQUESTED_REVIEW_KINDS, REVIEW_TITLES
from reviewbot.review.findings import Comment, Review, Statistics
from reviewbot.review.hunks import Hunk, HunkError, parse_patch
from reviewbot.review.markdown import code_span, inert
from reviewbot.review.units import Skipped
from reviewbot.settings.defaults import (
    COMMENT_BODY_MAX_CHARS,
    MAX_SKIPPED_LISTED,
    REVIEW_BODY_MAX_CHARS,
)

#: Why a finding is in the review body rather than inline.
OVER_CAP = "over the inline comment cap"
REJECTED = "GitHub could not place it on the diff"
TOO_LONG = "too long for an inline comment"

_SHA = re.compile(r"[0-9a-f]{7,64}")
_SUGGESTION_FENCE = re.compile(r"^(`{3,}|~{3,})suggestion[ \t]*$", re.M)
_ITEM_RESERVE = 600
"""Body characters kept free for the counts line, headings and the "not shown" note."""


@dataclass(frozen=True)
class BodyItem:
    """A finding written into the review body instead of inline, and why."""

    comment: Comment
    reason: str


@dataclass(frozen=True)
class ReviewPayload:
    """One ``POST /repos/{o}/{r}/pulls/{n}/reviews`` request, still structured.

    ``body``, ``comments`` and :meth:`to_json` are rendered from the fields, so
    moving a comment into the body (:func:`move_comment_to_body`) re-renders both.
    """

    kind: str
    head_sha: str
    inline: tuple[Comment, ...]
    in_body: tuple[BodyItem, ...] = ()
    summary: str | None = None
    skipped: tuple[Skipped, ...] = ()
    units: int = 0
    statistics: Statistics = field(default_factory=Statistics)
    """The review's counts (what was not posted, the suggestions' parse checks)."""
    already_posted: int = 0
    event: str = "COMMENT"
    reply_to: int | None = None
    """The command comment this review answers (its reply marker goes in the body)."""

    @property
    def commit_id(self) -> str:
        return self.head_sha

    @property
    def new_fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of every new finding of this review (inline or in the body)."""
        return tuple(c.fingerprint for c in self.inline) + tuple(
            i.comment.fingerprint for i in self.in_body
        )

    @property
    def fingerprint(self) -> str:
        return review_fingerprint(self.new_fingerprints)

    @property
    def marker(self) -> str:
        return review_marker(self.kind, self.head_sha, self.fingerprint)

    @cached_property
    def _rendered(self) -> tuple[str, tuple[str, ...]]:
        return _render_body(self)

    @property
    def body(self) -> str:
        return self._rendered[0]

    @property
    def posted_fingerprints(self) -> frozenset[str]:
        """Findings this review will carry a marker for once posted."""
        return frozenset(c.fingerprint for c in self.inline) | frozenset(self._rendered[1])

    @property
    def comments(self) -> list[dict[str, Any]]:
        """Inline comments as GitHub wants them."""
        return [comment_json(c) for c in self.inline]

    def to_json(self) -> dict[str, Any]:
        """The request body of ``POST /pulls/{n}/reviews``."""
        return {
            "commit_id": self.commit_id,
            "body": self.body,
            "event": self.event,
            "comments": self.comments,
        }


def comment_json(c: Comment) -> dict[str, Any]:
    """``{"path","body","line","side"}`` plus ``start_line``/``start_side`` if multi-line."""
    out: dict[str, Any] = {
        "path": c.path,
        "body": _inline_body(c),
        "line": c.line,
        "side": c.side,
    }
    if c.start_line is not None and c.start_line != c.line:
        out["start_line"] = min(c.start_line, c.line)
        out["line"] = max(c.start_line, c.line)
        out["start_side"] = c.side
    return out


def _inline_body(c: Comment) -> str:
    """The comment's body made inert (keeping its own suggestion), then its marker."""
    return f"{inert(c.body, suggestion=c.suggestion)}\n\n{finding_marker(c.fingerprint)}"


def build_review_payload(
    review: Review,
    kind: str,
    head_sha: str,
    posted_fingerprints: Iterable[str],
    max_comments: int,
    reply_to: int | None = None,
) -> ReviewPayload | None:
    """The review to post for ``review`` at ``head_sha``, or None if nothing is new.

    Findings already posted (``posted_fingerprints``) are left out; the first
    ``max_comments`` new ones are inline, the rest are listed in the body.
    ``reply_to``: the id of the slash command comment the review answers.
    """
    _check_args(kind, head_sha, max_comments)
    posted = frozenset(posted_fingerprints)
    new = _new_comments(review.comments, posted)
    already = len({c.fingerprint for c in review.comments} & posted)
    inline: list[Comment] = []
    in_body: list[BodyItem] = []
    for c in new:
        if len(_inline_body(c)) > COMMENT_BODY_MAX_CHARS:
            in_body.append(BodyItem(c, TOO_LONG))
        elif len(inline) < max_comments:
            inline.append(c)
        else:
            in_body.append(BodyItem(c, OVER_CAP))
    if not _worth_posting(bool(new), kind, posted):
        return None
    return ReviewPayload(
        kind=kind,
        head_sha=head_sha,
        inline=tuple(inline),
        in_body=tuple(in_body),
        summary=review.summary,
        skipped=review.skipped,
        units=len(review.units),
        statistics=review.statistics,
        already_posted=already,
        reply_to=reply_to,
    )


def _check_args(kind: str, head_sha: str, max_comments: int) -> None:
    if kind not in REVIEW_TITLES:
        raise ValueError(f"job kind {kind!r} does not post a review")
    if not _SHA.fullmatch(head_sha):
        raise ValueError(f"head sha must be a lowercase hex commit id, got {head_sha!r}")
    if max_comments < 0:
        raise ValueError(f"max_comments must be >= 0, got {max_comments}")


def _new_comments(comments: Sequence[Comment], posted: frozenset[str]) -> list[Comment]:
    seen = set(posted)
    new = []
    for c in comments:
        if c.fingerprint not in seen:
            seen.add(c.fingerprint)
            new.append(c)
    return new


def _worth_posting(has_new: bool, kind: str, posted: frozenset[str]) -> bool:
    """Post when there is a new finding; else only to answer a person, or on a first review.

    - a new finding (inline or in the body) → post;
    - a review someone asked for (/review, /revise) → post, even "no new findings";
    - an automatic review of a PR with no earlier findings → post a short
      "no findings" review, so users see the bot ran;
    - otherwise (incremental review with nothing new, or a rerun whose findings
      were all posted already) → None: the summary and the skipped files alone
      were already reported and are not worth a new review.
    """
    if has_new or kind in REQUESTED_REVIEW_KINDS:
        return True
    return kind == "auto" and not posted


def move_comment_to_body(
    payload: ReviewPayload, index: int, reason: str = REJECTED
) -> ReviewPayload:
    """``payload`` with inline comment ``index`` listed in the body instead."""
    return move_comments_to_body(payload, [index], reason)


def move_comments_to_body(
    payload: ReviewPayload, indices: Iterable[int], reason: str = REJECTED
) -> ReviewPayload:
    """``payload`` with the given inline comments listed in the body instead."""
    chosen = set(indices)
    bad = [i for i in chosen if not 0 <= i < len(payload.inline)]
    if bad:
        raise IndexError(f"no inline comment {bad[0]} (payload has {len(payload.inline)})")
    keep = tuple(c for i, c in enumerate(payload.inline) if i not in chosen)
    moved = tuple(BodyItem(c, reason) for i, c in enumerate(payload.inline) if i in chosen)
    return replace(payload, inline=keep, in_body=payload.in_body + moved)


# --- anchoring (which comments GitHub can place) ----------------------------------------


def unplaceable_comments(
    comments: Sequence[Comment], patches: Mapping[str, str | None]
) -> list[int]:
    """Indices of ``comments`` GitHub cannot anchor on the diff given by ``patches``.

    ``patches`` maps each path of the pull request to its patch, or None where
    GitHub omits it (binary or very large files): comments there are not judged.
    Hunks are read by the one hunk parser (:func:`reviewbot.review.hunks.parse_patch`).
    A comment is unplaceable when its path is not in the diff, or its line (and
    start line) are not lines of one hunk on its side.
    """
    bad = []
    cache: dict[str, list[Hunk] | None] = {}
    for i, c in enumerate(comments):
        if c.path not in patches:
            bad.append(i)
            continue
        if c.path not in cache:
            cache[c.path] = _hunks(patches[c.path])
        hunks = cache[c.path]
        if hunks is None:
            continue
        start = c.line if c.start_line is None else c.start_line
        if not any({start, c.line} <= h.lines_on(c.side) for h in hunks):
            bad.append(i)
    return bad


def _hunks(patch: str | None) -> list[Hunk] | None:
    """The hunks of a file's patch; None when GitHub gave none or it does not parse."""
    if patch is None:
        return None
    try:
        return parse_patch(patch)
    except HunkError:
        return None


# --- body rendering --------------------------------------------------------------------


def _where(path: str, start: int | None, line: int, side: str) -> str:
    span = f"line {line}" if start is None or start == line else f"lines {start}–{line}"
    old = " (old side)" if side == "LEFT" else ""
    return f"{code_span(path)} {span}{old}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _item_markdown(item: BodyItem) -> str:
    """A finding as a list item: location, text, suggestion as plain code, marker."""
    c = item.comment
    text = inert(_SUGGESTION_FENCE.sub(lambda m: f"Suggested change:\n\n{m.group(1)}", c.body))
    lines = [f"- **{_where(c.path, c.start_line, c.line, c.side)}**", ""]
    lines += [*text.split("\n"), "", finding_marker(c.fingerprint)]
    return "\n".join(lines[:1] + [f"  {x}" if x else "" for x in lines[1:]])


def _skipped_markdown(skipped: Sequence[Skipped]) -> str:
    if not skipped:
        return ""
    rows = [f"- {code_span(s.path)}: {inert(s.reason)}" for s in skipped[:MAX_SKIPPED_LISTED]]
    if len(skipped) > MAX_SKIPPED_LISTED:
        rows.append(f"- … and {len(skipped) - MAX_SKIPPED_LISTED} more")
    return "\n".join([f"### Not reviewed ({len(skipped)})", "", *rows])


def _summary_markdown(payload: ReviewPayload) -> str:
    if payload.summary:
        limit = REVIEW_BODY_MAX_CHARS // 4
        text = payload.summary
        if len(text) > limit:
            text = text[:limit].rstrip() + " …"
        return f"### Summary\n\n{inert(text)}"
    return ""


def counts_line(payload: ReviewPayload, in_body_shown: int) -> str:
    n_new = len(payload.inline) + len(payload.in_body)
    if n_new == 0:
        parts = [f"No new findings in {plural(payload.units, 'reviewed unit')} of the diff."]
    else:
        where = f"{len(payload.inline)} inline"
        if payload.in_body:
            where += f", {in_body_shown} below"
        parts = [
            f"{plural(n_new, 'new finding')} ({where}) in "
            f"{plural(payload.units, 'reviewed unit')} of the diff."
        ]
    if payload.already_posted:
        parts.append(
            f"{plural(payload.already_posted, 'finding')} already posted earlier and not repeated."
        )
    parts += payload.statistics.sentences()
    return " ".join(parts)


_NOTES = {
    OVER_CAP: "Over this review's inline comment cap:",
    REJECTED: "GitHub could not place these on the diff:",
    TOO_LONG: "Too long for an inline comment:",
}


def _items_markdown(items: Sequence[BodyItem], budget: int) -> tuple[str, tuple[str, ...]]:
    """The body's list of findings (grouped by reason) within ``budget`` characters."""
    blocks: list[str] = []
    shown: list[str] = []
    used = 0
    left_out = 0
    reasons = list(dict.fromkeys([*_NOTES, *(i.reason for i in items)]))
    for reason in reasons:
        rendered = []
        for item in (i for i in items if i.reason == reason):
            text = _item_markdown(item)
            if used + len(text) + 2 > budget:
                left_out += 1
                continue
            used += len(text) + 2
            rendered.append(text)
            shown.append(item.comment.fingerprint)
        if rendered:
            blocks.append(_NOTES.get(reason) or inert(f"{reason[:1].upper()}{reason[1:]}:"))
            blocks += rendered
    if left_out:
        blocks.append(
            f"{plural(left_out, 'more finding')} did not fit in this review "
            "(GitHub's size limit); a later `/review` will post them."
        )
    return "\n\n".join(blocks), tuple(shown)


def _render_body(payload: ReviewPayload) -> tuple[str, tuple[str, ...]]:
    """The review body, and the fingerprints of the body findings it shows."""
    title = f"## {REVIEW_TITLES[payload.kind]} · `{payload.head_sha[:7]}`"
    summary = _summary_markdown(payload)
    skipped = _skipped_markdown(payload.skipped)
    markers = payload.marker
    if payload.reply_to is not None:
        markers += "\n" + reply_marker(payload.reply_to)
    fixed = len(title) + len(summary) + len(skipped) + len(markers) + _ITEM_RESERVE
    fixed += len(" ".join(payload.statistics.sentences()))
    items, shown = _items_markdown(payload.in_body, max(0, REVIEW_BODY_MAX_CHARS - fixed))
    findings = f"### Findings not posted inline\n\n{items}" if items else ""
    sections = [title, summary, counts_line(payload, len(shown)), findings, skipped]
    body = "\n\n".join(s for s in sections if s)
    return f"{body}\n\n{markers}\n", shown


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (ending in an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
