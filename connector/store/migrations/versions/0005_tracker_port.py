"""Trackers outside the connector's database: tracker intents (the pull's outbox towards
the tracker) and each complaint's issue in an external tracker.

Revision ID: 0005_tracker_port
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_tracker_port"
down_revision = "0003_delivery"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tracker_intents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tracking_id", sa.String(32), nullable=False, index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("state", sa.String(10), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column("issue_ref", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("done_at", TS),
    )
    op.create_table(
        "tracker_issues",
        sa.Column("tracking_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("issue_ref", sa.String(64), nullable=False),
        sa.Column("officer_status", sa.String(20)),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tracker_issues")
    op.drop_table("tracker_intents")
