"""auto-restart index (revision 0005, after 0004, 2026-11-24)."""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0005", "0004"

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
