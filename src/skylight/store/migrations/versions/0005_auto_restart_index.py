"""auto-restart index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 03:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WHERE = "time_next_auto_restart IS NOT NULL AND time_deleted IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.create_index(
            "ix_instance_next_auto_restart",
            ["time_next_auto_restart"],
            unique=False,
            sqlite_where=sa.text(_WHERE),
            postgresql_where=sa.text(_WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_next_auto_restart")
