"""The migrations build exactly the schema the code declares (``store/schema.py``)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from skylight.store import migrate, schema
from skylight.store.engine import make_engine


def test_migrations_at_head_match_the_declared_schema(db_url: str) -> None:
    """A table, column or index declared but not migrated (or the reverse) shows here, on
    both stores, before a server in service finds it missing."""
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    assert diff == []
