"""Alembic migrations of the findings database (run by ``SqlFindingStore.open``)."""
