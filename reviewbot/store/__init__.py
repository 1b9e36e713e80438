"""The findings database: posted findings and their outcome labels, kept with
SQLAlchemy in SQLite (the default, a file in the cache directory) or PostgreSQL
(``REVIEWBOT_DATABASE_URL``, for teams running several workers).

:class:`~reviewbot.store.sql.SqlFindingStore` implements
:class:`reviewbot.runners.ports.FindingStore`; its schema is kept current by the Alembic
migrations shipped in ``migrations/`` (run when a store is opened).
"""

from reviewbot.store.sql import SqlFindingStore, database_url

__all__ = ["SqlFindingStore", "database_url"]
