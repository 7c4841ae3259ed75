"""The store: one schema on SQLite or PostgreSQL, reached through ``Store.tx``."""

from skylight.store.engine import Store

__all__ = ["Store"]
