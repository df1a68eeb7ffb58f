"""E-mail notifications: the notifications table and each desk user's choice of what
they receive.

Revision ID: 0007_notify
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_notify"
down_revision = "0006_desk"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event", sa.String(12), nullable=False),
        sa.Column("recipient", sa.String(254), nullable=False, index=True),
        sa.Column("agency", sa.String(64)),
        sa.Column("tracking_id", sa.String(32)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("hold_pull", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(10), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("message_id", sa.String(200), index=True),
        sa.Column("bundled_at", TS),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_error", sa.String(200)),
        sa.Column("sending", sa.Boolean, nullable=False),
        sa.Column("unsure", sa.Integer, nullable=False),
        sa.Column("sent_at", TS),
    )
    # Plain ADD COLUMN (nullable: NULL is the default choice), no table rebuild.
    op.add_column("desk_users", sa.Column("notify", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("desk_users") as batch:
        batch.drop_column("notify")
    op.drop_table("notifications")
