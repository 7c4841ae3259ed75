"""instance status_origin_event_id (revision 0012, after 0011, 2026-12-03).

The event that began the trouble an instance is in: its status reason is the newest event
of that trouble (attempt 3 failed), this is where it began (the crash), so that the status
can tell the whole story: since when, what happened first, what happened since."""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0012", "0011"


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_origin_event_id", sa.String(length=36)))
    # An instance in trouble today: its trouble began, as far as we know, with its status.
    op.execute("UPDATE instance SET status_origin_event_id = status_event_id")


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("status_origin_event_id")
