"""The findings table, as SQLAlchemy 2 typed declarative models.

The migrations in ``migrations/versions`` create the same schema explicitly; a change
here needs a new migration there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Constraint and index names, the same on every backend (migrations refer to them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC; read back aware (UTC) on every backend.

    SQLite keeps no time zone: values are converted to UTC before they are written and
    UTC is attached again when they are read. A naive value is taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return aware(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return aware(value)


def aware(value: datetime) -> datetime:
    """``value`` in UTC (a naive value is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# SQLite makes only an INTEGER PRIMARY KEY an auto-incrementing row id.
_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FindingRow(Base):
    """One posted finding (every :class:`~reviewbot.learning.records.PostedFinding`
    field) with its current outcome label and refresh bookkeeping."""

    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("repo", "pr_number", "fingerprint"),
        Index("ix_findings_repo_label", "repo", "label"),
        Index("ix_findings_installation_id_settled", "installation_id", "settled"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    # -- the posted finding --
    repo: Mapped[str] = mapped_column(String(255))
    pr_number: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    line: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(128))
    critique: Mapped[str] = mapped_column(Text)
    original: Mapped[str] = mapped_column(Text)
    start_line: Mapped[int | None] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))
    unit_start_line: Mapped[int] = mapped_column(Integer)
    changed: Mapped[list[int]] = mapped_column(JSON)
    suggestion: Mapped[str | None] = mapped_column(Text)
    code_hash: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    category: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(Text)
    adapter: Mapped[str | None] = mapped_column(Text)
    prompt_format: Mapped[str] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    review_id: Mapped[int | None] = mapped_column(BigInteger)
    inline: Mapped[bool] = mapped_column(Boolean)
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # -- what became of it --
    label: Mapped[str] = mapped_column(String(16), default="unknown", server_default="unknown")
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    comment_id: Mapped[int | None] = mapped_column(BigInteger)
    refreshed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    settled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


#: The table itself, for Core statements.
FINDINGS: Table = Base.metadata.tables["findings"]
