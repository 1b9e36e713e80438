"""Building the GitHub review payload from a Review (pure)."""

from __future__ import annotations

import time

import pytest

from reviewbot.github.checks import check_run_failure, check_run_success
from reviewbot.github.markers import (
    ReviewMarker,
    finding_marker,
    parse_markers,
    review_fingerprint,
    review_marker_prefix,
)
from reviewbot.github.payload import (
    OVER_CAP,
    REJECTED,
    build_review_payload,
    move_comment_to_body,
    unplaceable_comments,
)
from reviewbot.jobs.job import REQUESTED_REVIEW_KINDS
from reviewbot.review.findings import Comment, Dropped, Review, fingerprint
from reviewbot.review.hunks import parse_patch
from reviewbot.review.suggestions import Suggestion, suggestion_block
from reviewbot.review.units import ReviewUnit, Skipped
from reviewbot.settings.defaults import MAX_SKIPPED_LISTED, REVIEW_BODY_MAX_CHARS
from reviewbot.settings.repo import RepoConfigError

SHA = "0123456789abcdef0123456789abcdef01234567"


def comment(
    path: str = "src/app.py",
    line: int = 3,
    start: int | None = None,
    text: str = "This variable is never used; remove it.",
    suggestion: str | None = None,
    side: str = "RIGHT",
) -> Comment:
    body = text
    if suggestion is not None:
        s = Suggestion(start or line, line, tuple(suggestion.split("\n")))
        body += "\n\n" + suggestion_block(s)
    return Comment(
        path=path,
        line=line,
        side=side,  # type: ignore[arg-type]
        start_line=start,
        body=body,
        suggestion=suggestion,
        fingerprint=fingerprint(path, text, suggestion),
    )


def review(*comments: Comment, skipped: tuple[Skipped, ...] = (), summary: str | None = None):
    unit = ReviewUnit("src/app.py", 1, 10, "@@ -1,5 +1,10 @@", "x = 1")
    return Review(
        units=(unit, unit),
        comments=comments,
        summary=summary,
        skipped=skipped,
        dropped=(Dropped("src/app.py", 1, "no finding"),),
    )


def test_markers_on_the_body_and_every_comment() -> None:
    a, b = comment(line=3), comment(line=5, text="Handle the None case here.")
    payload = build_review_payload(review(a, b), "auto", SHA, set(), 10)
    assert payload is not None
    data = payload.to_json()
    assert data["event"] == "COMMENT"
    assert data["commit_id"] == SHA
    fp = review_fingerprint([a.fingerprint, b.fingerprint])
    assert data["body"].rstrip().endswith(f"<!-- reviewbot:auto:{SHA}:{fp} -->")
    assert data["body"].count(review_marker_prefix("auto", SHA)) == 1
    for sent, c in zip(data["comments"], (a, b), strict=True):
        assert sent["body"] == f"{c.body}\n\n<!-- reviewbot:finding:{c.fingerprint} -->"
    markers = parse_markers(data["body"] + "".join(c["body"] for c in data["comments"]))
    assert markers.findings == {a.fingerprint, b.fingerprint}
    assert markers.reviews == {ReviewMarker("auto", SHA, fp)}


def test_review_fingerprint_ignores_order_and_duplicates() -> None:
    assert review_fingerprint(["b", "a"]) == review_fingerprint(["a", "b", "a"])
    assert review_fingerprint(["a"]) != review_fingerprint(["b"])


def test_single_and_multi_line_comments_as_github_wants_them() -> None:
    single = comment(line=4)
    multi = comment(line=9, start=6, text="Simplify this loop.", suggestion="y = [f(v) for v in x]")
    left = comment(line=2, side="LEFT", text="Why delete this check?")
    payload = build_review_payload(review(single, multi, left), "auto", SHA, set(), 10)
    assert payload is not None
    s, m, lft = payload.comments
    assert set(s) == {"path", "body", "line", "side"}
    assert (s["path"], s["line"], s["side"]) == ("src/app.py", 4, "RIGHT")
    assert set(m) == {"path", "body", "line", "side", "start_line", "start_side"}
    assert (m["start_line"], m["line"], m["start_side"]) == (6, 9, "RIGHT")
    assert "```suggestion\ny = [f(v) for v in x]\n```" in m["body"]
    assert (lft["side"], lft["line"]) == ("LEFT", 2)


def test_already_posted_findings_are_never_repeated_and_counted_once() -> None:
    a, b = comment(line=3), comment(line=5, text="Handle the None case here.")
    # ``a`` twice in one review is one finding (one fingerprint): posted once, counted once
    payload = build_review_payload(review(a, b, a), "incremental", SHA, {a.fingerprint}, 10)
    assert payload is not None
    assert [c.fingerprint for c in payload.inline] == [b.fingerprint]
    assert a.fingerprint not in payload.body
    assert payload.already_posted == 1
    assert "1 finding already posted earlier and not repeated" in payload.body
    fresh = build_review_payload(review(a, b, a), "auto", SHA, set(), 10)
    assert fresh is not None
    assert [c.fingerprint for c in fresh.inline] == [a.fingerprint, b.fingerprint]


def test_nothing_new_gives_none_unless_someone_asked_or_first_review() -> None:
    a = comment()
    seen = {a.fingerprint}
    assert build_review_payload(review(a), "incremental", SHA, seen, 10) is None
    assert build_review_payload(review(), "incremental", SHA, set(), 10) is None
    assert build_review_payload(review(a), "auto", SHA, seen, 10) is None
    # a summary or skipped files alone are not worth a new review on a rerun
    rerun = review(a, skipped=(Skipped("poetry.lock", "lockfile"),), summary="- old")
    assert build_review_payload(rerun, "auto", SHA, seen, 10) is None
    # first automatic review with zero findings: a short "no findings" review
    first = build_review_payload(review(), "auto", SHA, set(), 10)
    assert first is not None
    assert first.comments == []
    assert "No new findings in 2 reviewed units" in first.body
    # a person asked for a review: always answered
    assert {"review", "revise"} == REQUESTED_REVIEW_KINDS
    for kind in REQUESTED_REVIEW_KINDS:
        asked = build_review_payload(review(a), kind, SHA, seen, 10)
        assert asked is not None and asked.inline == ()


def test_cap_moves_the_overflow_into_the_body_readably() -> None:
    a = comment(line=3)
    b = comment(line=8, start=6, text="Use a comprehension.", suggestion="ys = [v for v in xs]")
    c = comment(path="lib/util.py", line=12, text="Off-by-one in the range end.")
    payload = build_review_payload(review(a, b, c), "auto", SHA, set(), 1)
    assert payload is not None
    assert [x.fingerprint for x in payload.inline] == [a.fingerprint]
    assert [(i.comment.fingerprint, i.reason) for i in payload.in_body] == [
        (b.fingerprint, OVER_CAP),
        (c.fingerprint, OVER_CAP),
    ]
    body = payload.body
    assert "3 new findings (1 inline, 2 below)" in body
    assert "- **`src/app.py` lines 6–8**" in body
    assert "  Use a comprehension." in body
    assert "- **`lib/util.py` line 12**" in body
    assert "Off-by-one in the range end." in body
    # the suggestion becomes plain code in the body (a body cannot hold a suggestion)
    assert "```suggestion" not in body
    assert "  Suggested change:\n\n  ```\n  ys = [v for v in xs]\n  ```" in body
    assert finding_marker(b.fingerprint) in body and finding_marker(c.fingerprint) in body
    assert payload.posted_fingerprints == {a.fingerprint, b.fingerprint, c.fingerprint}


def test_zero_cap_puts_every_finding_in_the_body() -> None:
    payload = build_review_payload(review(comment()), "auto", SHA, set(), 0)
    assert payload is not None
    assert payload.comments == [] and len(payload.in_body) == 1


def test_fences_inside_suggested_code_cannot_break_out_of_the_body_item() -> None:
    code = "doc = '''\n```\n'''"
    payload = build_review_payload(
        review(comment(line=4, start=2, text="Quote it.", suggestion=code)), "auto", SHA, set(), 0
    )
    assert payload is not None
    assert "  ````\n  doc = '''\n  ```\n  '''\n  ````" in payload.body


def test_skipped_files_are_listed_and_never_dropped_silently() -> None:
    skipped = (Skipped("poetry.lock", "excluded (lockfile)"), Skipped("logo.png", "binary file"))
    payload = build_review_payload(review(comment(), skipped=skipped), "auto", SHA, set(), 5)
    assert payload is not None
    assert "### Not reviewed (2)" in payload.body
    assert "- `poetry.lock`: excluded (lockfile)" in payload.body
    assert "- `logo.png`: binary file" in payload.body
    many = tuple(Skipped(f"gen/{i}.py", "generated") for i in range(MAX_SKIPPED_LISTED + 5))
    big = build_review_payload(review(comment(), skipped=many), "auto", SHA, set(), 5)
    assert big is not None
    assert f"### Not reviewed ({MAX_SKIPPED_LISTED + 5})" in big.body
    assert "… and 5 more" in big.body


def test_summary_and_counts_in_the_body() -> None:
    payload = build_review_payload(
        review(comment(), summary="- `src/app.py` line 3: unused variable"), "auto", SHA, set(), 5
    )
    assert payload is not None
    assert "### Summary\n\n- `src/app.py` line 3: unused variable" in payload.body
    assert "of the diff. Not posted: no finding (1).\n" in payload.body
    assert payload.body.startswith(f"## reviewbot review · `{SHA[:7]}`")


def test_move_comment_to_body_keeps_the_review_marker() -> None:
    a, b = comment(line=3), comment(line=5, text="Handle the None case here.")
    payload = build_review_payload(review(a, b), "auto", SHA, set(), 10)
    assert payload is not None
    moved = move_comment_to_body(payload, 0)
    assert [c.fingerprint for c in moved.inline] == [b.fingerprint]
    assert moved.in_body[0].comment == a and moved.in_body[0].reason == REJECTED
    assert "GitHub could not place these on the diff" in moved.body
    assert finding_marker(a.fingerprint) in moved.body
    assert moved.marker == payload.marker
    assert moved.posted_fingerprints == payload.posted_fingerprints
    with pytest.raises(IndexError):
        move_comment_to_body(moved, 5)


def test_body_stays_under_githubs_size_limit() -> None:
    text = "Consider this. " + "word " * 1500
    many = [comment(line=i, text=f"{i} {text}") for i in range(1, 40)]
    payload = build_review_payload(review(*many), "auto", SHA, set(), 2)
    assert payload is not None
    assert len(payload.body) <= REVIEW_BODY_MAX_CHARS
    assert "did not fit in this review" in payload.body
    shown = parse_markers(payload.body).findings
    assert payload.posted_fingerprints == shown | {c.fingerprint for c in payload.inline}
    assert len(payload.posted_fingerprints) < len(many)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="does not post a review"):
        build_review_payload(review(), "help", SHA, set(), 5)
    with pytest.raises(ValueError, match="hex commit"):
        build_review_payload(review(), "auto", "main", set(), 5)
    with pytest.raises(ValueError, match="max_comments"):
        build_review_payload(review(), "auto", SHA, set(), -1)


PATCH = """@@ -1,4 +1,5 @@
 import os
-import re
+import sys
+import json
 def main():
     pass
@@ -20,2 +21,3 @@ def helper():
     x = 1
+    y = 2
     return x"""


def test_a_files_patch_gives_the_anchorable_lines_of_each_hunk_by_side() -> None:
    first, second = parse_patch(PATCH)
    assert first.lines_on("RIGHT") == {1, 2, 3, 4, 5}
    assert first.lines_on("LEFT") == {1, 2, 3, 4}
    assert second.lines_on("RIGHT") == {21, 22, 23}
    assert second.lines_on("LEFT") == {20, 21}


def test_unplaceable_comments() -> None:
    comments = [
        comment(line=3),  # ok
        comment(line=10),  # between hunks
        comment(line=22, start=3),  # spans two hunks
        comment(line=23, start=21),  # ok, one hunk
        comment(path="other.py", line=1),  # not in the diff
        comment(path="logo.png", line=1),  # no patch: not judged
        comment(line=2, side="LEFT"),  # removed line: ok
    ]
    patches = {"src/app.py": PATCH, "logo.png": None}
    assert unplaceable_comments(comments, patches) == [1, 2, 4]


def test_check_run_texts() -> None:
    ok = check_run_success(None, SHA)
    assert ok.conclusion == "success" and ok.title == "No new findings"
    payload = build_review_payload(review(comment()), "auto", SHA, set(), 5)
    assert payload is not None
    posted = check_run_success(payload, SHA)
    assert posted.title == "1 new finding posted"
    config = check_run_failure(RepoConfigError("max_comments must be an integer", "max_comments"))
    assert config.conclusion == "failure"
    assert config.title == "Invalid .github/reviewbot.toml"
    assert "max_comments must be an integer" in config.summary
    internal = check_run_failure(RuntimeError("secret internals /srv/key.pem"))
    assert "RuntimeError" in internal.summary
    assert "/srv/key.pem" not in internal.summary
    assert check_run_failure("model crashed").summary == "model crashed"


def test_reading_markers_out_of_hostile_text_takes_linear_time() -> None:
    """Unclosed marker openings (anyone can write them) made the old pattern quadratic."""
    from reviewbot.github.markers import strip_markers

    text = "<!-- reviewbot:" * 20_000 + " <!-- reviewbot:reply:5 -->"
    started = time.perf_counter()
    assert strip_markers(text).endswith("<!-- reviewbot:")
    assert parse_markers(text).replies == frozenset({5})
    assert time.perf_counter() - started < 2.0
