"""replica time_stopped (revision 0009, after 0008, 2026-12-03).

A replica that stops gracefully says so, so that peers adopt whatever it could not hand over
at once instead of after the adoption timeout, and a restart on SQLite is not refused by
the replica that just stopped."""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0009", "0008"


def upgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_stopped", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.drop_column("time_stopped")
