"""Bring the schema to the newest migration; run at every start of the server."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

_HERE = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x5B1_16_47  # advisory lock id: replicas starting together migrate once


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def upgrade(engine: Engine) -> None:
    cfg = alembic_config()
    if engine.dialect.name == "sqlite":
        # Migrations must not run inside the BEGIN IMMEDIATE hook's transaction handling.
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
