"""reviewbot.learning.stats against hand-counted labelled findings."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from reviewbot.learning.records import Evidence, LabelledFinding, OutcomeLabel, PostedFinding
from reviewbot.learning.stats import (
    BREAKDOWNS,
    Row,
    acceptance_stats,
    confidence_bucket,
    iso_week,
    path_key,
    stats_json,
    stats_table,
)


def lf(
    label: str,
    path: str = "src/app.py",
    *,
    category: str = "bug",
    adapter: str | None = None,
    confidence: float | None = None,
    posted_at: datetime = datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
    signals: tuple[str, ...] = (),
    repo: str = "acme/app",
) -> LabelledFinding:
    """A labelled finding with every field the figures group by set explicitly."""
    finding = PostedFinding(
        repo=repo,
        pr_number=7,
        head_sha="a" * 40,
        path=path,
        line=3,
        fingerprint=f"fp-{path}-{label}-{posted_at.isoformat()}",
        critique="This can fail.",
        original="x = 1\n",
        category=category,
        adapter=adapter,
        confidence=confidence,
        posted_at=posted_at,
    )
    return LabelledFinding(finding, OutcomeLabel(label, tuple(Evidence(s) for s in signals)))


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 12, 0, tzinfo=UTC)


#: Six findings: 3 accepted, 2 rejected, 1 unknown.
ITEMS = [
    lf("accepted", "src/app.py", confidence=0.95, posted_at=day(2026, 11, 2),
       signals=("suggestion-committed",)),
    lf("rejected", "src/db/models.py", adapter="team-v1", confidence=0.5,
       posted_at=day(2026, 11, 3), signals=("thumbs-down",)),
    lf("unknown", "README.md", category="docs", posted_at=day(2026, 11, 10)),
    lf("accepted", "tests/test_x.py", category="tests", adapter="team-v1", confidence=0.7,
       posted_at=day(2026, 11, 10), signals=("suggestion-committed",)),
    lf("accepted", "src/app.py", category="style", confidence=0.2, posted_at=day(2026, 11, 17),
       signals=("changed-and-resolved", "thumbs-up")),
    lf("rejected", "src/app.py", confidence=0.9, posted_at=day(2026, 11, 17),
       signals=("resolved-unchanged",)),
]  # fmt: skip


def rows(stats, name: str) -> list[tuple[str, int, int, int, int]]:
    return [(r.key, r.posted, r.accepted, r.rejected, r.unknown) for r in stats.breakdowns[name]]


def test_overall_counts_and_rate_leave_unknowns_out_of_the_denominator() -> None:
    o = acceptance_stats(ITEMS).overall
    assert (o.posted, o.accepted, o.rejected, o.unknown, o.decided) == (6, 3, 2, 1, 5)
    assert o.rate == pytest.approx(3 / 5)
    assert o.decided_share == pytest.approx(5 / 6)


def test_row_rate_is_none_when_nothing_is_decided() -> None:
    assert Row("x", posted=2, unknown=2).rate is None
    assert Row("x", posted=2, unknown=2).decided_share == 0.0
    assert Row("x").decided_share is None
    assert Row("x", posted=1, rejected=1).rate == 0.0
    only_unknown = acceptance_stats([lf("unknown"), lf("unknown")]).overall
    assert (only_unknown.posted, only_unknown.rate) == (2, None)


def test_breakdowns_are_all_present_in_order() -> None:
    assert list(acceptance_stats(ITEMS).breakdowns) == list(BREAKDOWNS)
    assert BREAKDOWNS == ("category", "path", "adapter", "confidence", "week")


def test_by_category_sorted_by_posted_then_key() -> None:
    stats = acceptance_stats(ITEMS)
    assert rows(stats, "category") == [
        ("bug", 3, 1, 2, 0),
        ("docs", 1, 0, 0, 1),
        ("style", 1, 1, 0, 0),
        ("tests", 1, 1, 0, 0),
    ]
    bug, docs = stats.breakdowns["category"][:2]
    assert bug.rate == pytest.approx(1 / 3)
    assert docs.rate is None


def test_empty_category_counts_as_other() -> None:
    stats = acceptance_stats([lf("accepted", category="")])
    assert rows(stats, "category") == [("other", 1, 1, 0, 0)]


def test_by_path_without_globs_is_the_top_level_directory() -> None:
    assert rows(acceptance_stats(ITEMS), "path") == [
        ("src/**", 4, 2, 2, 0),
        ("*", 1, 0, 0, 1),
        ("tests/**", 1, 1, 0, 0),
    ]


def test_by_path_takes_the_first_matching_glob_in_order() -> None:
    globs = ("src/db/**", "src/**", "*.md")
    assert rows(acceptance_stats(ITEMS, globs), "path") == [
        ("src/**", 3, 2, 1, 0),
        ("(other)", 1, 1, 0, 0),
        ("*.md", 1, 0, 0, 1),
        ("src/db/**", 1, 0, 1, 0),
    ]
    # The broader glob first swallows src/db too.
    assert rows(acceptance_stats(ITEMS, ("src/**", "src/db/**")), "path") == [
        ("src/**", 4, 2, 2, 0),
        ("(other)", 2, 1, 0, 1),
    ]


def test_path_key_uses_fnmatch_semantics() -> None:
    assert path_key("src/a/b.py", ("*.py",)) == "*.py"  # * crosses "/"
    assert path_key("src/a/b.py", ("*.md", "src/*")) == "src/*"
    assert path_key("docs/x.rst", ("*.py",)) == "(other)"
    assert path_key("setup.py") == "*"
    assert path_key("a/b/c.py") == "a/**"


def test_by_adapter_names_the_base_model() -> None:
    assert rows(acceptance_stats(ITEMS), "adapter") == [
        ("(base model)", 4, 2, 1, 1),
        ("team-v1", 2, 1, 1, 0),
    ]


@pytest.mark.parametrize(
    ("confidence", "bucket"),
    [
        (0.0, "0.00–0.50"),
        (0.4999, "0.00–0.50"),
        (0.5, "0.50–0.70"),
        (0.6999, "0.50–0.70"),
        (0.7, "0.70–0.90"),
        (0.8999, "0.70–0.90"),
        (0.9, "≥ 0.90"),
        (1.0, "≥ 0.90"),
        (-0.1, "0.00–0.50"),
        (None, "not scored"),
        (math.nan, "not scored"),
    ],
)
def test_confidence_bucket_edges(confidence: float | None, bucket: str) -> None:
    assert confidence_bucket(confidence) == bucket


def test_by_confidence_bucket() -> None:
    assert rows(acceptance_stats(ITEMS), "confidence") == [
        ("≥ 0.90", 2, 1, 1, 0),
        ("0.00–0.50", 1, 1, 0, 0),
        ("0.50–0.70", 1, 0, 1, 0),
        ("0.70–0.90", 1, 1, 0, 0),
        ("not scored", 1, 0, 0, 1),
    ]


def test_by_week_is_chronological() -> None:
    assert rows(acceptance_stats(ITEMS), "week") == [
        ("2026-W45", 2, 1, 1, 0),
        ("2026-W46", 2, 1, 0, 1),
        ("2026-W47", 2, 1, 1, 0),
    ]


def test_weeks_across_a_year_boundary_are_iso_weeks_in_time_order() -> None:
    items = [
        lf("accepted", posted_at=day(2027, 1, 4)),  # Monday: 2027-W01
        lf("accepted", posted_at=day(2027, 1, 5)),
        lf("accepted", posted_at=day(2027, 1, 6)),
        lf("rejected", posted_at=day(2027, 1, 1)),  # Friday: still 2026-W53
        lf("unknown", posted_at=day(2026, 12, 28)),
        lf("accepted", posted_at=day(2025, 12, 29)),  # Monday: 2026-W01
    ]
    assert rows(acceptance_stats(items), "week") == [
        ("2026-W01", 1, 1, 0, 0),
        ("2026-W53", 2, 0, 1, 1),
        ("2027-W01", 3, 3, 0, 0),
    ]


def test_iso_week_takes_aware_times_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    # Monday 00:30 at UTC+2 is still Sunday in UTC.
    assert iso_week(datetime(2027, 1, 4, 0, 30, tzinfo=plus_two)) == "2026-W53"
    assert iso_week(datetime(2027, 1, 4, 0, 30)) == "2027-W01"
    assert iso_week(datetime(2026, 3, 2, tzinfo=UTC)) == "2026-W10"


def test_by_signal_counts_the_first_evidence_of_decided_labels() -> None:
    stats = acceptance_stats(ITEMS)
    assert stats.by_signal == {
        "suggestion-committed": 2,
        "changed-and-resolved": 1,
        "thumbs-down": 1,
        "resolved-unchanged": 1,
    }
    assert list(stats.by_signal) == [
        "suggestion-committed",
        "changed-and-resolved",
        "resolved-unchanged",
        "thumbs-down",
    ]
    no_evidence = acceptance_stats([lf("accepted"), lf("unknown"), lf("rejected", signals=("x",))])
    assert no_evidence.by_signal == {"(no evidence)": 1, "x": 1}


def test_repo_and_since() -> None:
    stats = acceptance_stats(ITEMS, since=date(2026, 11, 1))
    assert (stats.repo, stats.since) == ("acme/app", date(2026, 11, 1))
    mixed = acceptance_stats([lf("accepted"), lf("accepted", repo="acme/other")])
    assert mixed.repo is None
    assert acceptance_stats(ITEMS, repo="acme/named").repo == "acme/named"


def test_stats_json_shape_and_rounding() -> None:
    data = stats_json(acceptance_stats(ITEMS, since=date(2026, 11, 1)))
    assert json.loads(json.dumps(data)) == data
    assert list(data) == ["repo", "since", "overall", "breakdowns", "by_signal"]
    assert (data["repo"], data["since"]) == ("acme/app", "2026-11-01")
    assert data["overall"] == {
        "key": "overall",
        "posted": 6,
        "accepted": 3,
        "rejected": 2,
        "unknown": 1,
        "decided": 5,
        "rate": 0.6,
        "decided_share": 0.8333,
    }
    assert list(data["breakdowns"]) == list(BREAKDOWNS)
    bug, docs = data["breakdowns"]["category"][:2]
    assert (bug["key"], bug["rate"], bug["decided_share"]) == ("bug", 0.3333, 1.0)
    assert (docs["key"], docs["rate"], docs["decided_share"]) == ("docs", None, 0.0)
    assert [r["key"] for r in data["breakdowns"]["week"]] == ["2026-W45", "2026-W46", "2026-W47"]
    assert data["by_signal"]["suggestion-committed"] == 2


def test_stats_json_of_nothing() -> None:
    data = stats_json(acceptance_stats([]))
    assert data["repo"] is None and data["since"] is None
    assert data["overall"]["posted"] == 0
    assert data["overall"]["rate"] is None and data["overall"]["decided_share"] is None
    assert data["breakdowns"] == {name: [] for name in BREAKDOWNS}
    assert data["by_signal"] == {}


def table_rows(text: str, section: str) -> list[list[str]]:
    """The body cells of the Markdown table under ``section`` in ``text``."""
    lines = text.splitlines()
    start = lines.index(section) + 2  # the blank line, then the header row
    out = []
    for line in lines[start + 2 :]:  # past the header and the rule
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_stats_table_headline() -> None:
    items = [
        lf("accepted", repo="owner/repo", signals=("suggestion-committed",)),
        lf("rejected", repo="owner/repo", signals=("thumbs-down",)),
        lf("unknown", repo="owner/repo"),
    ]
    text = stats_table(acceptance_stats(items, since=date(2026, 11, 1)))
    assert text.splitlines()[0] == (
        "owner/repo since 2026-11-01: 3 comments posted, 1 accepted, 1 rejected, 1 unknown"
        " — acceptance 50.0 % of decided (2 of 3 decided)"
    )


def test_stats_table_contains_every_breakdown_with_its_numbers() -> None:
    text = stats_table(acceptance_stats(ITEMS))
    assert text.startswith("acme/app: 6 comments posted, 3 accepted, 2 rejected, 1 unknown")
    assert "acceptance 60.0 % of decided (5 of 6 decided)" in text.splitlines()[0]
    assert table_rows(text, "By category:") == [
        ["bug", "3", "1", "2", "0", "33.3 %"],
        ["docs", "1", "0", "0", "1", "n/a"],
        ["style", "1", "1", "0", "0", "100.0 %"],
        ["tests", "1", "1", "0", "0", "100.0 %"],
    ]
    assert table_rows(text, "By path:")[0] == ["src/**", "4", "2", "2", "0", "50.0 %"]
    assert table_rows(text, "By adapter:")[0] == ["(base model)", "4", "2", "1", "1", "66.7 %"]
    assert table_rows(text, "By confidence:")[0] == ["≥ 0.90", "2", "1", "1", "0", "50.0 %"]
    assert [r[0] for r in table_rows(text, "By week:")] == ["2026-W45", "2026-W46", "2026-W47"]
    assert table_rows(text, "Decided by:")[0] == ["suggestion-committed", "2"]
    header = text.splitlines()[text.splitlines().index("By category:") + 2]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "category",
        "posted",
        "accepted",
        "rejected",
        "unknown",
        "acceptance",
    ]


def test_stats_table_columns_line_up() -> None:
    text = stats_table(acceptance_stats(ITEMS))
    lines = text.splitlines()
    start = lines.index("By path:") + 2
    table = lines[start : start + 2 + len(table_rows(text, "By path:"))]
    assert len({len(line) for line in table}) == 1


def test_stats_table_escapes_pipes_in_keys() -> None:
    text = stats_table(acceptance_stats([lf("accepted", path="a|b/c.py")]))
    assert "| a\\|b/** |" in text


def test_stats_table_when_nothing_is_decided() -> None:
    text = stats_table(acceptance_stats([lf("unknown")]))
    assert text.splitlines()[0] == (
        "acme/app: 1 comment posted, 0 accepted, 0 rejected, 1 unknown"
        " — nothing decided yet (0 of 1 decided)"
    )


def test_stats_table_of_nothing() -> None:
    assert stats_table(acceptance_stats([])) == "all repositories: no findings recorded.\n"
    text = stats_table(acceptance_stats([], repo="owner/repo", since=date(2026, 11, 1)))
    assert text == "owner/repo since 2026-11-01: no findings recorded.\n"
