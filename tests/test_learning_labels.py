"""Outcome labels, suppression and the record shapes of posted findings (pure)."""

from __future__ import annotations

import pytest

from reviewbot.learning.labels import Fate, LaterCode, Signal, fate_of, label_finding, mapped_line
from reviewbot.learning.records import (
    LabelledFinding,
    OutcomeLabel,
    PostedFinding,
    RecordError,
    category_of,
    check_record,
    code_hash,
    export_record,
    posted_findings,
    record_context,
)
from reviewbot.learning.suppression import suppress, suppression_rules
from reviewbot.review.diffplan import LineChanges, line_changes
from reviewbot.review.findings import Comment, Review, anchored_code, fingerprint
from reviewbot.review.units import ReviewUnit
from reviewbot.settings.defaults import REJECTED_BEFORE

OLD, NEW = "1" * 40, "2" * 40


def finding(
    start: int | None = 4, line: int = 5, suggestion: str | None = None, side: str = "RIGHT"
) -> PostedFinding:
    return PostedFinding(
        repo="o/r",
        pr_number=1,
        head_sha=OLD,
        path="a.py",
        line=line,
        start_line=start,
        side=side,
        fingerprint="f" * 16,
        critique="Handle the empty list.",
        original="x",
        suggestion=suggestion,
    )


def later(removed=(), inserted=(), text=None, new_path="a.py", known=True) -> LaterCode:
    return LaterCode(NEW, LineChanges(new_path, frozenset(removed), tuple(inserted)), text, known)


TEAM_UP, TEAM_DOWN = Signal("+1", "ann", True), Signal("-1", "bob", True)


# -- where lines go, and what became of them ------------------------------------------


def test_line_changes_read_removed_lines_and_insertion_points_from_a_git_diff() -> None:
    diff = (
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n"
        "@@ -1,6 +1,6 @@\n a\n-b\n+B\n c\n d\n+new\n e\n-f\n"
    )
    changes = line_changes(diff)["a.py"]
    assert changes.new_path == "a.py"
    assert changes.removed == {2, 6}
    assert changes.inserted_after == (2, 4)  # B after old line 2 (b), new after d (4)
    assert mapped_line(5, changes) == 6 and mapped_line(3, changes) == 3  # e, c
    gone = "diff --git a/a.py b/a.py\ndeleted file mode 100644\n--- a/a.py\n+++ /dev/null\n"
    gone += "@@ -1,2 +0,0 @@\n-a\n-b\n"
    assert line_changes(gone)["a.py"].new_path is None


def test_fate_of_the_anchored_lines() -> None:
    f = finding(4, 5)
    assert fate_of(f, None) is Fate.UNCHANGED
    assert fate_of(f, LaterCode(OLD)) is Fate.UNCHANGED  # no later head
    assert fate_of(f, LaterCode(NEW)) is Fate.UNCHANGED  # the file was not touched
    assert fate_of(f, later(removed=[9], inserted=[1])) is Fate.UNCHANGED  # elsewhere
    assert fate_of(f, later(inserted=[3])) is Fate.UNCHANGED  # right before line 4
    assert fate_of(f, later(inserted=[5])) is Fate.UNCHANGED  # right after line 5
    assert fate_of(f, later(inserted=[4])) is Fate.CHANGED  # between 4 and 5
    assert fate_of(f, later(removed=[5])) is Fate.CHANGED
    assert fate_of(f, later(new_path=None)) is Fate.CHANGED  # the file was deleted
    assert fate_of(f, later(known=False)) is Fate.NOT_KNOWN  # history rewritten
    assert fate_of(finding(side="LEFT"), later(removed=[5])) is Fate.UNCHANGED


def test_a_committed_suggestion_is_found_where_the_lines_moved() -> None:
    f = finding(4, 5, suggestion="    return x")
    text = "\n".join(["# added", "# added", "a", "b", "c", "    return x", "z"])
    # Two lines inserted at the top, then lines 4-5 replaced by the suggestion.
    moved = later(removed=[4, 5], inserted=[0, 0, 5], text=text)
    assert mapped_line(4, moved.changes) == 6
    assert fate_of(f, moved) is Fate.SUGGESTION_COMMITTED
    other = later(removed=[4, 5], inserted=[0, 0, 5], text=text.replace("return x", "pass"))
    assert fate_of(f, other) is Fate.CHANGED


# -- the label and its evidence ----------------------------------------------------------


def test_a_committed_suggestion_is_accepted_whatever_the_reactions() -> None:
    f = finding(4, 5, suggestion="ok")
    label = label_finding(
        f, [TEAM_DOWN], later(removed=[4, 5], inserted=[5], text="a\nb\nc\nok"), False
    )
    assert label.label == "accepted"
    assert [(e.signal, e.commit) for e in label.evidence] == [("suggestion-committed", NEW)]


def test_reactions_count_only_from_the_team() -> None:
    f = finding()
    assert label_finding(f, [TEAM_UP], None, False).label == "accepted"
    assert label_finding(f, [TEAM_DOWN], None, False).label == "rejected"
    outsider = Signal("-1", "drive-by", False)
    assert label_finding(f, [outsider], None, False) == OutcomeLabel("unknown")
    assert label_finding(f, [Signal("heart", "ann", True)], None, False).label == "unknown"


def test_contradicting_reactions_leave_the_thread_and_code_to_decide() -> None:
    f = finding()
    assert label_finding(f, [TEAM_UP, TEAM_DOWN], None, False).label == "unknown"
    resolved = Signal("resolved", "ann", True)
    label = label_finding(f, [TEAM_UP, TEAM_DOWN, resolved], later(removed=[5]), False)
    assert label.label == "accepted"
    assert [e.signal for e in label.evidence] == ["changed-and-resolved"]


def test_resolution_accepts_a_change_and_rejects_no_change() -> None:
    f = finding()
    resolved = Signal("resolved", "ann", True)
    changed = label_finding(f, [resolved], later(removed=[4]), False)
    assert changed.label == "accepted" and changed.evidence[0].by == "ann"
    same = label_finding(f, [resolved], later(removed=[20]), False)
    assert [(e.signal, e.by, e.commit) for e in same.evidence] == [
        ("resolved-unchanged", "ann", NEW)
    ]
    assert same.label == "rejected"
    assert label_finding(f, [resolved], later(known=False), False).label == "unknown"
    assert label_finding(f, [Signal("resolved", "x", False)], None, False).label == "unknown"


def test_a_reply_then_a_merge_without_change_is_a_rejection() -> None:
    f = finding()
    reply = Signal("reply", "ann", True)
    assert label_finding(f, [reply], None, merged=False).label == "unknown"
    merged = label_finding(f, [reply], later(removed=[30]), merged=True)
    assert merged.label == "rejected" and merged.evidence[0].signal == "replied-merged-unchanged"
    assert label_finding(f, [reply], later(removed=[5]), merged=True).label == "unknown"


def test_thumbs_up_and_its_resolution_are_both_evidence() -> None:
    f = finding()
    label = label_finding(f, [TEAM_UP, Signal("resolved", "ann", True)], later(removed=[4]), False)
    assert label.label == "accepted"
    assert [e.signal for e in label.evidence] == ["thumbs-up", "changed-and-resolved"]


# -- records ----------------------------------------------------------------------------


UNIT = ReviewUnit("src/x.py", 10, 13, "@@", "a = 1\nb = 2\nc = 3\nd = 4", added_lines=(11, 12))


def comment(critique: str, start: int = 11, end: int = 12) -> Comment:
    code = anchored_code(UNIT, start, end)
    return Comment(
        path=UNIT.path,
        line=end,
        side="RIGHT",
        start_line=start,
        body=f"{critique} (made inert)",
        suggestion=None,
        fingerprint=fingerprint(UNIT.path, critique, None, code),
        confidence=0.93,
        critique=critique,
        unit=UNIT,
    )


def test_posted_findings_record_what_the_model_saw_and_the_export_shape() -> None:
    c = comment("A SQL injection: use a bound parameter.")
    [f] = posted_findings(
        [c],
        repo="o/r",
        pr_number=3,
        head_sha=OLD,
        inline=frozenset({c.fingerprint}),
        model="m",
        adapter="/adapters/team",
        prompt_format="alpaca",
        installation_id=9,
        review_id=77,
    )
    assert (f.original, f.unit_start_line, f.changed) == (UNIT.original, 10, (11, 12))
    assert f.code_hash == code_hash("b = 2\n  c = 3") and f.category == "security"
    assert f.inline and f.critique == "A SQL injection: use a bound parameter."
    record = export_record(LabelledFinding(f, OutcomeLabel("unknown")))
    assert {"label", "evidence", "fingerprint", "path", "start_line", "line", "original"} <= set(
        record
    )
    assert {"critique", "suggestion", "pr", "head_sha", "model", "adapter"} <= set(record)
    assert check_record(record) is record
    assert record_context(record) == {"path": "src/x.py", "start_line": 10, "changed": [11, 12]}


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ([], "not a JSON object"),
        ({"label": "accepted", "path": "a"}, "missing key"),
        ({"label": "maybe", "path": "a", "original": "x", "critique": "y"}, "unknown label"),
        ({"label": "human", "path": "a", "original": " ", "critique": "y"}, "empty"),
        ({"label": "human", "path": 3, "original": "x", "critique": "y"}, "path is not"),
    ],
)
def test_bad_records_are_refused_with_the_reason(record, problem: str) -> None:
    with pytest.raises(RecordError, match=problem):
        check_record(record)


def test_categories_from_the_critique_words() -> None:
    assert category_of("Possible SQL injection here") == "security"
    assert category_of("This crashes on None") == "bug"
    assert category_of("Rename this variable for readability") == "style"
    assert category_of("Looks odd") == "other"


# -- suppression -------------------------------------------------------------------------


def rejected(c: Comment, critique: str | None = None) -> PostedFinding:
    first = c.start_line or c.line
    return PostedFinding(
        repo="o/r",
        pr_number=1,
        head_sha=OLD,
        path=c.path,
        line=c.line,
        fingerprint=c.fingerprint,
        critique=critique or c.critique,
        original=UNIT.original,
        code_hash=code_hash(anchored_code(UNIT, first, c.line)),
    )


def test_suppression_by_fingerprint_and_by_near_duplicate_words_on_the_same_code() -> None:
    said = comment("Use a list comprehension instead of the explicit loop.")
    reworded = comment("Use a list comprehension instead of this explicit loop.")
    elsewhere = comment("Use a list comprehension instead of this explicit loop.", 13, 13)
    unrelated = comment("This raises ZeroDivisionError when the list is empty.")
    rules = suppression_rules([rejected(said)])
    assert len(rules) == 1
    assert rules.matches(said) and rules.matches(reworded)
    assert not rules.matches(elsewhere)  # other code
    assert not rules.matches(unrelated)  # other words
    review = Review((UNIT,), (reworded, unrelated), None, ())
    kept = suppress(review, rules)
    assert kept.comments == (unrelated,)
    assert dict(kept.statistics.dropped) == {REJECTED_BEFORE: 1}
    assert suppress(review, suppression_rules([])) is review
