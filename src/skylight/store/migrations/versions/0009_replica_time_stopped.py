"""replica time_stopped

A replica that stops gracefully says so, so that peers adopt whatever it could not hand over
at once instead of after the adoption timeout, and a restart on SQLite is not refused by
the replica that just stopped.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_stopped", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("replica", schema=None) as batch_op:
        batch_op.drop_column("time_stopped")
