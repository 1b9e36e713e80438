"""Shared test settings and fixtures: data paths, Redis databases, tiny models.

Everything the tests read lies in ``tests/data`` (with the upstream LICENSE files).
The tests use the Redis databases below, and flush only those; set
``REVIEWBOT_TEST_REDIS_DBS`` (three comma-separated numbers: Celery broker of the
webhook tests, broker of the end-to-end tests, dedupe keys) to use others, and
``REVIEWBOT_TEST_REDIS`` for another server. The bench/ scripts use other numbers.
The findings-store tests run on SQLite and on the PostgreSQL server at
``REVIEWBOT_TEST_POSTGRES_URL`` (trust authentication), where each test creates its own
database and drops it after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tinymodel import CHAT_TEMPLATE, build_tiny_adapter, build_tiny_model

if TYPE_CHECKING:
    from reviewbot.store.sql import SqlFindingStore

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
WEBHOOKS = DATA / "webhooks"

REDIS = os.environ.get("REVIEWBOT_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
_DBS = [int(n) for n in os.environ.get("REVIEWBOT_TEST_REDIS_DBS", "11,13,15").split(",")]
if len(_DBS) != 3 or len(set(_DBS)) != 3:
    raise ValueError("REVIEWBOT_TEST_REDIS_DBS must name three different Redis databases")
#: The Celery broker of the webhook tests (flushed before and after each test using it).
WEB_BROKER_DB = _DBS[0]
#: The Celery broker and result backend of the end-to-end tests (flushed likewise).
E2E_BROKER_DB = _DBS[1]
#: Dedupe keys of the webhook tests: each test uses its own key prefix and deletes its keys.
DEDUPE_DB = _DBS[2]


def redis_url(db: int) -> str:
    """The URL of test database ``db``."""
    return f"{REDIS}/{db}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama + locally trained tokenizer (no chat template) in a temp dir."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model (same weights), its tokenizer carrying a chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat-model"), CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A seeded LoRA adapter on ``tiny_model_dir`` (non-zero B) with reviewbot.json."""
    return build_tiny_adapter(tmp_path_factory.mktemp("tiny-adapter"), tiny_model_dir)


#: The PostgreSQL server of the findings-store tests (a superuser: each test creates a
#: database ``reviewbot_test_<hex>`` on it and drops it after).
POSTGRES = os.environ.get(
    "REVIEWBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_database() -> Iterator[str]:
    """A fresh, empty database on :data:`POSTGRES` (its URL), dropped afterwards."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from reviewbot.store.sql import engine_url, safe_url

    server = engine_url(POSTGRES)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"reviewbot_test_{uuid.uuid4().hex[:16]}"
    failure = None
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as e:
        admin.dispose()
        failure = " ".join(str(getattr(e, "orig", None) or e).split())
    if failure is not None:
        pytest.fail(
            f"PostgreSQL at {safe_url(server)} does not answer ({failure}): start it "
            "(.ci/run does) or set REVIEWBOT_TEST_POSTGRES_URL",
            pytrace=False,
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty findings database: a SQLite file, then a fresh PostgreSQL
    database (the test fails when the server does not answer)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'findings.sqlite3'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def store(database_url: str) -> Iterator[SqlFindingStore]:
    """An opened :class:`~reviewbot.store.sql.SqlFindingStore` on ``database_url``."""
    from reviewbot.store.sql import SqlFindingStore

    opened = SqlFindingStore.open(database_url)
    try:
        yield opened
    finally:
        opened.close()
