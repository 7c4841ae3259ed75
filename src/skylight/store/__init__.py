"""The store: one schema on SQLite or PostgreSQL, reached through ``Store.tx``."""

from typing import Any

import sqlalchemy as sa

from skylight.store.engine import Store, StoreUnavailable, after_commit

# A row as the store hands it out: SQLAlchemy Core's, its columns attributes named as in
# ``schema.py`` (Core rows carry no static column types).
Row = sa.Row[Any]

__all__ = ["Row", "Store", "StoreUnavailable", "after_commit"]
