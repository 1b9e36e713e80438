"""The findings database (:mod:`reviewbot.store`), each test on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from reviewbot.learning.records import (
    Evidence,
    LabelledFinding,
    OutcomeLabel,
    PostedFinding,
    StoreError,
)
from reviewbot.store import SqlFindingStore, database_url
from reviewbot.store.models import Base
from reviewbot.store.sql import MIGRATIONS, engine_url

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _finding(fingerprint: str = "fp1", **changes: object) -> PostedFinding:
    base = PostedFinding(
        repo="octo/app",
        pr_number=7,
        head_sha="a" * 40,
        path="src/app.py",
        line=12,
        fingerprint=fingerprint,
        critique="Possible None dereference.",
        original="def f(x):\n    return x.y\n",
        installation_id=42,
        posted_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _version(url: str) -> list[str]:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> None:
    engine = create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


# -- record / findings --


def test_recording_is_idempotent_by_repo_pull_and_fingerprint(store: SqlFindingStore) -> None:
    f = _finding()
    assert store.record([f, f]) == 1
    assert store.record([f]) == 0
    assert store.record([replace(f, critique="changed words, same fingerprint")]) == 0
    assert store.record([]) == 0
    assert [x.finding for x in store.findings("octo/app", 7)] == [f]
    # The same fingerprint on another pull request or repository is another finding.
    assert store.record([replace(f, pr_number=8), replace(f, repo="octo/other")]) == 2


def test_recording_many_findings_counts_the_new_ones(store: SqlFindingStore) -> None:
    first = [_finding(f"fp{i}") for i in range(45)]
    assert store.record(first) == 45
    more = [_finding(f"fp{i}") for i in range(40, 100)]
    assert store.record(more) == 55
    assert len(store.findings("octo/app", 7)) == 100


def test_every_field_comes_back_as_it_was_recorded(store: SqlFindingStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    full = _finding(
        "full",
        start_line=10,
        side="LEFT",
        unit_start_line=8,
        changed=(9, 10, 12),
        suggestion="return x.y if x else None\n",
        code_hash="0123456789abcdef",
        confidence=0.8125,
        category="bugs",
        model="Qwen/Qwen2.5-Coder-7B-Instruct",
        adapter="team-adapter",
        prompt_format="chatml",
        installation_id=2**40,
        review_id=2**35 + 1,
        inline=False,
        posted_at=datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=plus_two),
    )
    bare = _finding("bare", installation_id=None, posted_at=T0 + timedelta(hours=1))
    assert bare.start_line is None and bare.suggestion is None and bare.confidence is None
    assert store.record([full, bare]) == 2

    got = store.findings("octo/app", 7)
    assert got == [LabelledFinding(full), LabelledFinding(bare)]
    back = got[0].finding
    assert back.changed == (9, 10, 12) and isinstance(back.changed, tuple)
    assert back.posted_at == datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert back.posted_at.utcoffset() == timedelta(0)
    assert got[1].finding.posted_at.tzinfo is not None
    assert got[1].outcome == OutcomeLabel("unknown") and got[1].comment_id is None


def test_a_naive_datetime_is_taken_as_utc(store: SqlFindingStore) -> None:
    store.record([_finding(posted_at=datetime(2025, 3, 1, 12, 0))])
    assert store.findings("octo/app", 7)[0].finding.posted_at == T0


# -- outcomes --


def test_outcomes_are_stored_per_fingerprint_and_read_back(store: SqlFindingStore) -> None:
    a, b, c = (_finding(fp, posted_at=T0 + timedelta(minutes=i)) for i, fp in enumerate("abc"))
    other_pull = _finding("a", pr_number=8)
    store.record([a, b, c, other_pull])
    accepted = OutcomeLabel(
        "accepted",
        (
            Evidence("suggestion-applied", by="alice", commit="c" * 40),
            Evidence("thread-resolved", by="bob", detail="resolved by the author"),
        ),
    )
    rejected = OutcomeLabel("rejected", (Evidence("thumbs-down", by="carol"),))
    checked = T0 + timedelta(days=1)
    store.set_outcomes(
        "octo/app",
        7,
        {"a": (accepted, 1001), "b": (rejected, 2**40), "unknown-fp": (accepted, 5)},
        settled=False,
        checked_at=checked,
    )

    got = {x.finding.fingerprint: x for x in store.findings("octo/app", 7)}
    assert got["a"].outcome == accepted and got["a"].comment_id == 1001
    assert got["a"].refreshed_at == checked
    assert got["b"].outcome == rejected and got["b"].comment_id == 2**40
    assert got["c"].outcome == OutcomeLabel("unknown") and got["c"].refreshed_at is None
    # The other pull request's finding with the same fingerprint is untouched.
    assert store.findings("octo/app", 8)[0].outcome.label == "unknown"

    assert store.rejected("octo/app") == [b]
    assert store.rejected("octo/other") == []
    labelled = store.labelled("octo/app")
    assert [(x.finding.pr_number, x.finding.fingerprint) for x in labelled] == [
        (7, "a"),
        (8, "a"),
        (7, "b"),
        (7, "c"),
    ]
    assert labelled[0].outcome == accepted
    since = store.labelled("octo/app", since=T0 + timedelta(minutes=1))
    assert [x.finding.fingerprint for x in since] == ["b", "c"]

    # A later refresh changes the label back and settles the pull request.
    store.set_outcomes("octo/app", 7, {"b": (OutcomeLabel("unknown"), None)}, True, checked)
    assert store.rejected("octo/app") == []
    assert store.pulls_to_refresh() == [("octo/app", 8)]


def test_labelled_orders_by_posting_time_then_insertion(store: SqlFindingStore) -> None:
    later = _finding("later", posted_at=T0 + timedelta(seconds=1))
    same_1, same_2 = _finding("same-1"), _finding("same-2")
    store.record([later])
    store.record([same_1, same_2])
    assert [x.finding for x in store.labelled("octo/app")] == [same_1, same_2, later]


# -- refresh bookkeeping --


def test_pulls_to_refresh_never_checked_first_then_oldest(store: SqlFindingStore) -> None:
    def pull(number: int, **changes: object) -> PostedFinding:
        return _finding(f"fp{number}", pr_number=number, **changes)

    store.record(
        [
            pull(1, posted_at=T0 + timedelta(hours=3)),
            pull(2),
            pull(3),
            pull(4),
            pull(5),
            pull(6, installation_id=99),
            pull(7, repo="octo/lib"),
            pull(8, posted_at=T0 + timedelta(hours=1)),
        ]
    )
    day = T0 + timedelta(days=1)
    store.set_outcomes("octo/app", 2, {}, settled=False, checked_at=day + timedelta(hours=2))
    store.set_outcomes("octo/app", 3, {}, settled=False, checked_at=day + timedelta(hours=1))
    store.set_outcomes("octo/app", 4, {}, settled=True, checked_at=day)
    store.set_outcomes("octo/app", 5, {}, settled=False, checked_at=day + timedelta(hours=3))
    # PR 5 got a new review since its last check: its new finding was never checked.
    store.record([_finding("fp5-new", pr_number=5)])

    # Never checked (oldest posting first), then PR 5 (a finding never checked), then
    # the least recently checked; the settled PR 4 is left out.
    everything = [
        ("octo/app", 6),
        ("octo/lib", 7),
        ("octo/app", 8),
        ("octo/app", 1),
        ("octo/app", 5),
        ("octo/app", 3),
        ("octo/app", 2),
    ]
    assert store.pulls_to_refresh() == everything
    assert store.pulls_to_refresh(limit=3) == everything[:3]
    assert store.pulls_to_refresh(installation_id=42) == everything[1:]
    assert store.pulls_to_refresh(installation_id=99) == [("octo/app", 6)]
    assert store.pulls_to_refresh(repo="octo/lib") == [("octo/lib", 7)]
    assert store.pulls_to_refresh(installation_id=42, repo="octo/app", limit=2) == [
        ("octo/app", 8),
        ("octo/app", 1),
    ]
    assert store.pulls_to_refresh(installation_id=7) == []


def test_installations_with_unsettled_findings(store: SqlFindingStore) -> None:
    assert store.installations() == []
    store.record(
        [
            _finding("a", installation_id=42),
            _finding("b", installation_id=7),
            _finding("c", installation_id=None),
            _finding("d", installation_id=3, pr_number=9),
            _finding("e", installation_id=42, pr_number=10),
        ]
    )
    assert store.installations() == [3, 7, 42]
    store.set_outcomes("octo/app", 9, {}, settled=True, checked_at=T0)
    assert store.installations() == [7, 42]


# -- migrations and errors --


def test_opening_upgrades_to_the_head_revision_and_again_is_fine(database_url: str) -> None:
    with SqlFindingStore.open(database_url) as first:
        first.record([_finding()])
    assert _version(database_url) == [_head()]
    with SqlFindingStore.open(database_url) as again:
        assert len(again.findings("octo/app", 7)) == 1
    assert _version(database_url) == [_head()]
    engine = create_engine(engine_url(database_url))
    try:
        found = inspect(engine)
        assert set(found.get_table_names()) == {"findings", "alembic_version"}
        indexes = {i["name"] for i in found.get_indexes("findings")}
        assert {"ix_findings_repo_label", "ix_findings_installation_id_settled"} <= indexes
    finally:
        engine.dispose()


def test_stores_opening_a_fresh_database_at_once_both_succeed(database_url: str) -> None:
    barrier = threading.Barrier(3)
    opened: list[SqlFindingStore] = []
    failed: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            opened.append(SqlFindingStore.open(database_url))
        except BaseException as e:
            failed.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert failed == [] and len(opened) == 3
        assert opened[0].record([_finding()]) == 1
        assert opened[1].record([_finding()]) == 0
    finally:
        for s in opened:
            s.close()
    assert _version(database_url) == [_head()]


def test_a_database_from_a_newer_reviewbot_is_a_store_error(database_url: str) -> None:
    SqlFindingStore.open(database_url).close()
    _execute(database_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="9999"):
        SqlFindingStore.open(database_url)


def test_a_failed_query_is_a_store_error(database_url: str) -> None:
    with SqlFindingStore.open(database_url) as s:
        _execute(database_url, "DROP TABLE findings")
        with pytest.raises(StoreError, match="reading findings failed"):
            s.findings("octo/app", 7)
        with pytest.raises(StoreError, match="recording findings failed"):
            s.record([_finding()])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:sekrit@127.0.0.1:1/x?connect_timeout=2",
        "sqlite:////nonexistent-reviewbot-dir/sub/findings.sqlite3",
    ],
    ids=["postgresql", "sqlite"],
)
def test_an_unreachable_database_is_a_store_error_without_password(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        SqlFindingStore.open(url)
    message = str(caught.value)
    assert "sekrit" not in message
    assert "findings database" in message and "failed" in message
    if "postgresql" in url:
        assert "u:***@127.0.0.1:1/x" in message


def test_an_unsupported_or_invalid_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="unsupported backend 'mysql'"):
        SqlFindingStore.open("mysql://u:sekrit@127.0.0.1/x")
    with pytest.raises(StoreError, match="invalid database URL") as caught:
        SqlFindingStore.open("not a url :sekrit")
    assert "sekrit" not in str(caught.value)
    with pytest.raises(StoreError, match="opening failed"):
        SqlFindingStore.open("sqlite+nodriver:///findings.sqlite3")


def test_the_models_match_the_migrations(store: SqlFindingStore, database_url: str) -> None:
    """What the models declare is what the migrations created (else a migration is
    missing: ``alembic revision --autogenerate`` writes it)."""
    engine = create_engine(engine_url(database_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


# -- configuration --


def test_database_url_from_the_environment_or_the_cache_dir(tmp_path: Path) -> None:
    url = "postgresql://reviewbot@db.internal/reviewbot"
    assert database_url({"REVIEWBOT_DATABASE_URL": url}) == url
    cache = tmp_path / "cache" / "nested"
    got = database_url({"REVIEWBOT_CACHE": str(cache)})
    assert got == f"sqlite:///{cache.resolve() / 'reviewbot.sqlite3'}"
    assert cache.is_dir()


def test_a_plain_postgresql_url_uses_psycopg_3() -> None:
    assert engine_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"
    assert engine_url("sqlite:///x.db").drivername == "sqlite"
