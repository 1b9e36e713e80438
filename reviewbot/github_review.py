"""Turn a :class:`~reviewbot.findings.Review` into one GitHub review (pure, no IO).

Idempotency rests on hidden HTML-comment markers:

- the review body ends with ``<!-- reviewbot:{kind}:{head_sha}:{fingerprint} -->``
  (``fingerprint``: a short hash over the sorted fingerprints of the review's new
  findings), so a rerun for the same kind and head can see it was posted;
- every finding, inline or listed in the body, carries
  ``<!-- reviewbot:finding:{comment.fingerprint} -->``, so a finding is never
  posted twice on a pull request.

When there is nothing new to say, :func:`build_review_payload` returns None
(see :func:`_worth_posting` for the rule).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple

from reviewbot.config import (
    CHECK_RUN_SUMMARY_MAX_CHARS,
    CHECK_RUN_TITLE_MAX_CHARS,
    COMMENT_BODY_MAX_CHARS,
    MAX_SKIPPED_LISTED,
    REPO_CONFIG_PATH,
    REVIEW_BODY_MAX_CHARS,
    REVIEW_FINGERPRINT_CHARS,
)
from reviewbot.findings import Comment, Review
from reviewbot.repo_config import RepoConfigError
from reviewbot.units import Skipped

#: Job kinds that post a review, with the review's title.
REVIEW_TITLES: dict[str, str] = {
    "auto": "reviewbot review",
    "incremental": "reviewbot review of the new commits",
    "review": "reviewbot review (requested)",
    "revise": "reviewbot review with revisions (requested)",
    "summary": "reviewbot summary (requested)",
}
#: Kinds a person asked for: they always get an answer, even "no new findings".
REQUESTED_KINDS = frozenset({"review", "revise", "summary"})

#: Why a finding is in the review body rather than inline.
OVER_CAP = "over the inline comment cap"
REJECTED = "GitHub could not place it on the diff"
TOO_LONG = "too long for an inline comment"

_SHA = re.compile(r"[0-9a-f]{7,64}")
_FINDING_MARKER = re.compile(r"<!-- reviewbot:finding:([0-9a-f]{6,64}) -->")
_REVIEW_MARKER = re.compile(r"<!-- reviewbot:([a-z]+):([0-9a-f]{7,64}):([0-9a-f]{6,64}) -->")
_REPLY_MARKER = re.compile(r"<!-- reviewbot:reply:(\d{1,20}) -->")
_DENIED_MARKER = re.compile(r"<!-- reviewbot:denied:([A-Za-z0-9][A-Za-z0-9_.\[\]-]{0,60}) -->")
_SUGGESTION_FENCE = re.compile(r"^(`{3,}|~{3,})suggestion[ \t]*$", re.M)
_ITEM_RESERVE = 600
"""Body characters kept free for the counts line, headings and the "not shown" note."""


# --- markers ---------------------------------------------------------------------------


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


# --- the payload -----------------------------------------------------------------------


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
    dropped: int = 0
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
    return f"{c.body}\n\n{finding_marker(c.fingerprint)}"


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
    already = sum(1 for c in review.comments if c.fingerprint in posted)
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
        dropped=len(review.dropped),
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
    - /review, /revise, /summary (someone asked) → post, even "no new findings";
    - an automatic review of a PR with no earlier findings → post a short
      "no findings" review, so users see the bot ran;
    - otherwise (incremental review with nothing new, or a rerun whose findings
      were all posted already) → None: the summary and the skipped files alone
      were already reported and are not worth a new review.
    """
    if has_new or kind in REQUESTED_KINDS:
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

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def patch_hunks(patch: str) -> list[dict[str, frozenset[int]]]:
    """Per hunk of a file's patch (``GET /pulls/{n}/files``), the anchorable lines by side.

    RIGHT: new-side numbers of context and added lines; LEFT: old-side numbers
    of context and removed lines.
    """
    hunks: list[dict[str, set[int]]] = []
    old = new = 0
    for line in patch.rstrip("\n").split("\n"):
        m = _HUNK_HEADER.match(line)
        if m:
            old, new = int(m.group(1)), int(m.group(2))
            hunks.append({"LEFT": set(), "RIGHT": set()})
        elif not hunks or line.startswith("\\"):
            continue
        elif line.startswith("+"):
            hunks[-1]["RIGHT"].add(new)
            new += 1
        elif line.startswith("-"):
            hunks[-1]["LEFT"].add(old)
            old += 1
        else:
            hunks[-1]["RIGHT"].add(new)
            hunks[-1]["LEFT"].add(old)
            old, new = old + 1, new + 1
    return [{k: frozenset(v) for k, v in h.items()} for h in hunks]


def unplaceable_comments(
    comments: Sequence[Comment], patches: Mapping[str, str | None]
) -> list[int]:
    """Indices of ``comments`` GitHub cannot anchor on the diff given by ``patches``.

    ``patches`` maps each path of the pull request to its patch, or None where
    GitHub omits it (binary or very large files): comments there are not judged.
    A comment is unplaceable when its path is not in the diff, or its line (and
    start line) are not lines of one hunk on its side.
    """
    bad = []
    cache: dict[str, list[dict[str, frozenset[int]]]] = {}
    for i, c in enumerate(comments):
        if c.path not in patches:
            bad.append(i)
            continue
        patch = patches[c.path]
        if patch is None:
            continue
        hunks = cache.setdefault(c.path, patch_hunks(patch))
        start = c.line if c.start_line is None else c.start_line
        if not any({start, c.line} <= h[c.side] for h in hunks):
            bad.append(i)
    return bad


# --- body rendering --------------------------------------------------------------------


def _where(path: str, start: int | None, line: int, side: str) -> str:
    span = f"line {line}" if start is None or start == line else f"lines {start}–{line}"
    old = " (old side)" if side == "LEFT" else ""
    return f"`{path}` {span}{old}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _item_markdown(item: BodyItem) -> str:
    """A finding as a list item: location, text, suggestion as plain code, marker."""
    c = item.comment
    text = _SUGGESTION_FENCE.sub(lambda m: f"Suggested change:\n\n{m.group(1)}", c.body)
    lines = [f"- **{_where(c.path, c.start_line, c.line, c.side)}**", ""]
    lines += [*text.split("\n"), "", finding_marker(c.fingerprint)]
    return "\n".join(lines[:1] + [f"  {x}" if x else "" for x in lines[1:]])


def _skipped_markdown(skipped: Sequence[Skipped]) -> str:
    if not skipped:
        return ""
    rows = [f"- `{s.path}`: {s.reason}" for s in skipped[:MAX_SKIPPED_LISTED]]
    if len(skipped) > MAX_SKIPPED_LISTED:
        rows.append(f"- … and {len(skipped) - MAX_SKIPPED_LISTED} more")
    return "\n".join([f"### Not reviewed ({len(skipped)})", "", *rows])


def _summary_markdown(payload: ReviewPayload) -> str:
    if payload.summary:
        limit = REVIEW_BODY_MAX_CHARS // 4
        text = payload.summary
        if len(text) > limit:
            text = text[:limit].rstrip() + " …"
        return f"### Summary\n\n{text}"
    if payload.kind == "summary":
        return "### Summary\n\nNo flaws to summarise: no finding came with a revision."
    return ""


def _counts_line(payload: ReviewPayload, in_body_shown: int) -> str:
    n_new = len(payload.inline) + len(payload.in_body)
    if n_new == 0:
        parts = [f"No new findings in {_plural(payload.units, 'reviewed unit')} of the diff."]
    else:
        where = f"{len(payload.inline)} inline"
        if payload.in_body:
            where += f", {in_body_shown} below"
        parts = [
            f"{_plural(n_new, 'new finding')} ({where}) in "
            f"{_plural(payload.units, 'reviewed unit')} of the diff."
        ]
    if payload.already_posted:
        parts.append(
            f"{_plural(payload.already_posted, 'finding')} already posted earlier and not repeated."
        )
    if payload.dropped:
        parts.append(f"{_plural(payload.dropped, 'critique')} dropped by noise control.")
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
            blocks.append(_NOTES.get(reason, f"{reason[:1].upper()}{reason[1:]}:"))
            blocks += rendered
    if left_out:
        blocks.append(
            f"{_plural(left_out, 'more finding')} did not fit in this review "
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
    items, shown = _items_markdown(payload.in_body, max(0, REVIEW_BODY_MAX_CHARS - fixed))
    findings = f"### Findings not posted inline\n\n{items}" if items else ""
    sections = [title, summary, _counts_line(payload, len(shown)), findings, skipped]
    body = "\n\n".join(s for s in sections if s)
    return f"{body}\n\n{markers}\n", shown


# --- check runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRunResult:
    """What ``complete_check_run`` reports."""

    conclusion: str
    title: str
    summary: str


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (ending in an ellipsis when cut)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def check_run_success(payload: ReviewPayload | None, head_sha: str) -> CheckRunResult:
    """The check run of a finished review (``payload`` None: nothing new was posted)."""
    if payload is None:
        return CheckRunResult(
            "success",
            "No new findings",
            f"reviewbot found nothing new to post for `{head_sha[:7]}`.",
        )
    n_new = len(payload.inline) + len(payload.in_body)
    title = "No new findings" if n_new == 0 else f"{_plural(n_new, 'new finding')} posted"
    summary = _counts_line(payload, len(payload.posted_fingerprints) - len(payload.inline))
    if payload.skipped:
        summary += f"\n\n{_plural(len(payload.skipped), 'file or hunk')} not reviewed "
        summary += "(listed in the review)."
    return CheckRunResult("success", title, clip_text(summary, CHECK_RUN_SUMMARY_MAX_CHARS))


def check_run_failure(error: BaseException | str) -> CheckRunResult:
    """A failed run, for the check run: the message when it is safe to show.

    Errors marked ``user_facing`` (an invalid repository config, a GitHub API
    refusal) and plain strings are shown; any other exception is reported by
    type only — its text may hold internals meant for the server logs.
    """
    if isinstance(error, str):
        message = error
    elif getattr(error, "user_facing", False):
        message = str(error)
    else:
        message = (
            f"reviewbot hit an internal error ({type(error).__name__}); "
            "the server logs have the details."
        )
    if isinstance(error, RepoConfigError):
        title = f"Invalid {REPO_CONFIG_PATH}"
        message += (
            f"\n\nFix `{REPO_CONFIG_PATH}` on the default branch; the next push or a "
            "`/review` comment will use it."
        )
    else:
        title = "reviewbot could not review this pull request"
    return CheckRunResult(
        "failure",
        clip_text(title, CHECK_RUN_TITLE_MAX_CHARS),
        clip_text(message, CHECK_RUN_SUMMARY_MAX_CHARS),
    )
