"""sled time_unreachable (revision 0006, after 0005, 2026-11-24)."""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0006", "0005"


def upgrade() -> None:
    with op.batch_alter_table("sled", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_unreachable", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("sled", schema=None) as batch_op:
        batch_op.drop_column("time_unreachable")
