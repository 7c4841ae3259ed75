"""The store: one schema on SQLite or PostgreSQL, reached through ``Store.tx``."""

from skylight.store.engine import Store, StoreUnavailable, after_commit

__all__ = ["Store", "StoreUnavailable", "after_commit"]
