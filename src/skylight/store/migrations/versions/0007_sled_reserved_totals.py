"""sled reserved totals, kept by triggers

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 04:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from skylight.store import totals

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = ("reserved_hardware_threads", "reserved_memory", "reserved_local_storage")


def upgrade() -> None:
    with op.batch_alter_table("sled", schema=None) as batch_op:
        for name in _COLUMNS:
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
    # In this migration's transaction: the totals start right and every later change of a
    # reservation or disk moves them.
    op.execute(totals.BACKFILL)
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in totals.SQLITE if sqlite else totals.POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in totals.SQLITE_DROP if sqlite else totals.POSTGRESQL_DROP:
        op.execute(statement)
    with op.batch_alter_table("sled", schema=None) as batch_op:
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)
