"""The findings store on SQL: SQLite by default, PostgreSQL for teams.

:meth:`SqlFindingStore.open` connects to :func:`database_url` (``REVIEWBOT_DATABASE_URL``,
else a SQLite file in the cache directory) and brings the schema to the newest Alembic
revision first. Every database failure is raised as
:class:`~reviewbot.learning.records.StoreError`, its message naming the URL without
its password.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import (
    JSON,
    URL,
    Connection,
    Engine,
    Row,
    bindparam,
    case,
    create_engine,
    event,
    func,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from reviewbot.learning.records import (
    Evidence,
    LabelledFinding,
    OutcomeLabel,
    PostedFinding,
    StoreError,
)
from reviewbot.settings.defaults import (
    CACHE_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CACHE_DIR,
    DEFAULT_DATABASE_FILE,
)
from reviewbot.store.models import FINDINGS, UtcDateTime

log = logging.getLogger(__name__)

#: The Alembic script directory shipped in the package.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The PostgreSQL advisory lock held while the schema is upgraded (one worker at a time).
MIGRATION_LOCK = int.from_bytes(
    hashlib.sha256(b"reviewbot.store.migrations").digest()[:8], "big", signed=True
)
#: Seconds a SQLite connection waits for another one's write lock.
SQLITE_BUSY_TIMEOUT = 30.0
#: Seconds a PostgreSQL connection attempt may take (unless the URL says otherwise).
CONNECT_TIMEOUT = 10
#: Tries at switching a SQLite database to WAL mode (50 ms apart).
_WAL_ATTEMPTS = 40
#: Rows per INSERT statement (29 values each: under SQLite's oldest limit of 999).
_CHUNK = 30
#: Connection execution option: begin the SQLite transaction with the write lock.
_IMMEDIATE = "reviewbot_sqlite_immediate"
_KEY = ("repo", "pr_number", "fingerprint")
_BACKENDS = ("sqlite", "postgresql")


def database_url(env: Mapping[str, str] | None = None) -> str:
    """``$REVIEWBOT_DATABASE_URL``, else a SQLite file in the cache directory
    (``$REVIEWBOT_CACHE`` or ``~/.cache/reviewbot``, created if missing)."""
    env = os.environ if env is None else env
    url = (env.get(DATABASE_URL_ENV) or "").strip()
    if url:
        return url
    cache = Path(env.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser().resolve()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the cache directory {cache}: {e}") from e
    return f"sqlite:///{cache / DEFAULT_DATABASE_FILE}"


def engine_url(url: str | URL) -> URL:
    """``url`` parsed, a PostgreSQL URL naming no driver set to psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"invalid database URL ({e.__class__.__name__})") from e
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """``url`` as it may be shown: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def _error(what: str, url: str | URL, exc: BaseException) -> StoreError:
    """A StoreError for ``exc``: what failed, where, and the driver's reason, with the
    URL's password removed wherever it appears."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = " ".join(str(orig).split()) or orig.__class__.__name__
    message = f"findings database {safe_url(url)}: {what} failed: {reason}"
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password and len(str(password)) >= 4:  # (a shorter one would mangle the text)
        message = message.replace(str(password), "***")
    return StoreError(message)


def _create_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    if backend not in _BACKENDS:
        raise StoreError(
            f"findings database {safe_url(url)}: unsupported backend {backend!r} "
            "(use sqlite or postgresql)"
        )
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        _sqlite_transactions(engine)
        return engine
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = CONNECT_TIMEOUT
    return create_engine(url, pool_pre_ping=True, connect_args=args)


def _sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy emits BEGIN itself on SQLite (the driver's own handling leaves DDL
    outside transactions): writes and migrations begin IMMEDIATE, taking the write
    lock first, so two processes never both upgrade the schema."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        _use_wal(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Put the database in WAL mode (readers do not wait for writers: the web process
    and the workers). Switching fails at once, without waiting, while another connection
    holds a lock: it is retried a while, then the database keeps its journal mode."""
    cursor = dbapi_connection.cursor()
    try:
        for _ in range(_WAL_ATTEMPTS):
            try:
                (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() not in ("wal", "memory"):
                    cursor.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.05)
        log.debug("findings database: SQLite stays in its journal mode (locked)")
    finally:
        cursor.close()


def _upgrade(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine``, in one transaction holding a lock (a
    PostgreSQL advisory lock; SQLite's write lock), so concurrent openers take turns."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def _row(f: PostedFinding) -> dict[str, Any]:
    return {
        "repo": f.repo,
        "pr_number": f.pr_number,
        "head_sha": f.head_sha,
        "path": f.path,
        "line": f.line,
        "fingerprint": f.fingerprint,
        "critique": f.critique,
        "original": f.original,
        "start_line": f.start_line,
        "side": f.side,
        "unit_start_line": f.unit_start_line,
        "changed": list(f.changed),
        "suggestion": f.suggestion,
        "code_hash": f.code_hash,
        "confidence": f.confidence,
        "category": f.category,
        "model": f.model,
        "adapter": f.adapter,
        "prompt_format": f.prompt_format,
        "installation_id": f.installation_id,
        "review_id": f.review_id,
        "inline": f.inline,
        "posted_at": f.posted_at,
        "label": "unknown",
        "evidence": [],
        "comment_id": None,
        "refreshed_at": None,
        "checked_at": None,
        "settled": False,
    }


def _finding(row: Row[Any]) -> PostedFinding:
    return PostedFinding(
        repo=row.repo,
        pr_number=row.pr_number,
        head_sha=row.head_sha,
        path=row.path,
        line=row.line,
        fingerprint=row.fingerprint,
        critique=row.critique,
        original=row.original,
        start_line=row.start_line,
        side=row.side,
        unit_start_line=row.unit_start_line,
        changed=tuple(int(n) for n in row.changed or ()),
        suggestion=row.suggestion,
        code_hash=row.code_hash,
        confidence=row.confidence,
        category=row.category,
        model=row.model,
        adapter=row.adapter,
        prompt_format=row.prompt_format,
        installation_id=row.installation_id,
        review_id=row.review_id,
        inline=bool(row.inline),
        posted_at=row.posted_at,
    )


def _labelled(row: Row[Any]) -> LabelledFinding:
    evidence = tuple(Evidence.from_json(e) for e in row.evidence or ())
    return LabelledFinding(
        finding=_finding(row),
        outcome=OutcomeLabel(row.label, evidence),
        comment_id=row.comment_id,
        refreshed_at=row.refreshed_at,
    )


class SqlFindingStore:
    """:class:`reviewbot.runners.ports.FindingStore` on a SQLAlchemy engine (SQLite or
    PostgreSQL). Open it with :meth:`open`; it is safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._url = engine.url

    @classmethod
    def open(cls, url: str | None = None) -> SqlFindingStore:
        """Connect to ``url`` (None: :func:`database_url`) and upgrade its schema to the
        newest migration; StoreError when the database cannot be reached or upgraded."""
        raw = database_url() if url is None else url
        parsed = engine_url(raw)
        try:
            engine = _create_engine(parsed)
        except (SQLAlchemyError, ImportError) as e:  # no such driver, a bad option
            raise _error("opening", parsed, e) from e
        try:
            _upgrade(engine)
        except (SQLAlchemyError, CommandError) as e:
            engine.dispose()
            raise _error("opening (schema upgrade)", parsed, e) from e
        except BaseException:
            engine.dispose()
            raise
        log.info("findings database %s: schema up to date", safe_url(parsed))
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL, its password hidden."""
        return safe_url(self._url)

    def close(self) -> None:
        """Close the store's connections (it may not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> SqlFindingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlFindingStore({self.url!r})"

    @contextmanager
    def _transaction(self, what: str, write: bool = False) -> Iterator[Connection]:
        """One transaction (committed when the block ends); database errors become
        StoreError naming ``what`` failed."""
        try:
            with self._engine.connect() as conn:
                if write and conn.dialect.name == "sqlite":
                    conn.execution_options(**{_IMMEDIATE: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as e:
            raise _error(what, self._url, e) from e

    def _insert(self) -> Any:
        if self._engine.dialect.name == "postgresql":
            return postgresql_insert(FINDINGS)
        return sqlite_insert(FINDINGS)

    # -- FindingStore --

    def record(self, findings: Sequence[PostedFinding]) -> int:
        """Keep ``findings``; one already kept (same repo, PR and fingerprint) is left as
        it is. Returns how many were new."""
        rows = [_row(f) for f in findings]
        if not rows:
            return 0
        new = 0
        with self._transaction("recording findings", write=True) as conn:
            # The rows inserted are counted by RETURNING (psycopg reports no rowcount
            # here); SQLite before 3.35 has no RETURNING but counts its changes.
            returning = conn.dialect.insert_returning
            for start in range(0, len(rows), _CHUNK):
                stmt = (
                    self._insert()
                    .values(rows[start : start + _CHUNK])
                    .on_conflict_do_nothing(index_elements=list(_KEY))
                )
                if returning:
                    new += len(conn.execute(stmt.returning(FINDINGS.c.id)).all())
                else:
                    new += max(conn.execute(stmt).rowcount, 0)
        log.debug("findings database: %d of %d finding(s) new", new, len(rows))
        return new

    def findings(self, repo: str, pr_number: int) -> list[LabelledFinding]:
        """The findings posted on one pull request, in the order they were recorded."""
        query = (
            select(FINDINGS)
            .where(FINDINGS.c.repo == repo, FINDINGS.c.pr_number == pr_number)
            .order_by(FINDINGS.c.id)
        )
        with self._transaction("reading findings") as conn:
            return [_labelled(row) for row in conn.execute(query)]

    def set_outcomes(
        self,
        repo: str,
        pr_number: int,
        outcomes: Mapping[str, tuple[OutcomeLabel, int | None]],
        settled: bool,
        checked_at: datetime,
    ) -> None:
        """Store each fingerprint's label, evidence and comment id (refreshed at
        ``checked_at``); mark every finding of the PR checked, and ``settled`` or not."""
        of_pull = (FINDINGS.c.repo == repo, FINDINGS.c.pr_number == pr_number)
        with self._transaction("storing outcomes", write=True) as conn:
            if outcomes:
                stmt = (
                    update(FINDINGS)
                    .where(*of_pull, FINDINGS.c.fingerprint == bindparam("b_fingerprint"))
                    .values(
                        label=bindparam("b_label"),
                        evidence=bindparam("b_evidence", type_=JSON()),
                        comment_id=bindparam("b_comment_id"),
                        refreshed_at=bindparam("b_refreshed_at", type_=UtcDateTime()),
                    )
                )
                params = [
                    {
                        "b_fingerprint": fingerprint,
                        "b_label": label.label,
                        "b_evidence": label.evidence_json(),
                        "b_comment_id": comment_id,
                        "b_refreshed_at": checked_at,
                    }
                    for fingerprint, (label, comment_id) in outcomes.items()
                ]
                conn.execute(stmt, params)
            conn.execute(
                update(FINDINGS).where(*of_pull).values(checked_at=checked_at, settled=settled)
            )

    def pulls_to_refresh(
        self, installation_id: int | None = None, repo: str | None = None, limit: int = 100
    ) -> list[tuple[str, int]]:
        """(repo, PR) with unsettled findings: those with a finding never checked first,
        then the least recently checked; at most ``limit``."""
        unchecked = func.max(case((FINDINGS.c.checked_at.is_(None), 1), else_=0))
        oldest = func.min(FINDINGS.c.checked_at)
        query = (
            select(FINDINGS.c.repo, FINDINGS.c.pr_number)
            .where(FINDINGS.c.settled.is_(False))
            .group_by(FINDINGS.c.repo, FINDINGS.c.pr_number)
            .order_by(
                unchecked.desc(),
                case((oldest.is_(None), 0), else_=1),
                oldest,
                func.min(FINDINGS.c.posted_at),
                FINDINGS.c.repo,
                FINDINGS.c.pr_number,
            )
            .limit(limit)
        )
        if installation_id is not None:
            query = query.where(FINDINGS.c.installation_id == installation_id)
        if repo is not None:
            query = query.where(FINDINGS.c.repo == repo)
        with self._transaction("listing pull requests to refresh") as conn:
            return [(row.repo, row.pr_number) for row in conn.execute(query)]

    def installations(self) -> list[int]:
        """The installations with unsettled findings, in ascending order."""
        query = (
            select(FINDINGS.c.installation_id)
            .where(FINDINGS.c.settled.is_(False), FINDINGS.c.installation_id.is_not(None))
            .distinct()
            .order_by(FINDINGS.c.installation_id)
        )
        with self._transaction("listing installations") as conn:
            return [int(n) for n in conn.scalars(query)]

    def labelled(self, repo: str, since: datetime | None = None) -> list[LabelledFinding]:
        """Every finding posted on ``repo`` (at or after ``since``), oldest first."""
        query = select(FINDINGS).where(FINDINGS.c.repo == repo)
        if since is not None:
            query = query.where(FINDINGS.c.posted_at >= since)
        query = query.order_by(FINDINGS.c.posted_at, FINDINGS.c.id)
        with self._transaction("reading labelled findings") as conn:
            return [_labelled(row) for row in conn.execute(query)]

    def rejected(self, repo: str) -> list[PostedFinding]:
        """The findings labelled ``rejected`` on ``repo``, oldest first."""
        query = (
            select(FINDINGS)
            .where(FINDINGS.c.repo == repo, FINDINGS.c.label == "rejected")
            .order_by(FINDINGS.c.posted_at, FINDINGS.c.id)
        )
        with self._transaction("reading rejected findings") as conn:
            return [_finding(row) for row in conn.execute(query)]
