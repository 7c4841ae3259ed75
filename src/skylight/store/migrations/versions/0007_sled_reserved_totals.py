"""sled reserved totals, kept by triggers (revision 0007, after 0006, 2026-11-24)."""

import sqlalchemy as sa
from alembic import op

from skylight.store import totals

revision, down_revision = "0007", "0006"

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
