"""Initial schema: built-in tracker and connector state.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tracking_id", sa.String(32), nullable=False, unique=True),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("lapor_status", sa.String(20), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("classification", sa.String(32), nullable=False),
        sa.Column("category", sa.String(200)),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("anonymous", sa.Boolean, nullable=False),
        sa.Column("confidential", sa.Boolean, nullable=False),
        sa.Column("reporter_name", sa.Text),
        sa.Column("reporter_email", sa.Text),
        sa.Column("reporter_phone", sa.Text),
        sa.Column("location", sa.Text),
        sa.Column("attachments", sa.Text, nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("due_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_tickets_agency_status", "tickets", ["agency", "status"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("lapor_followup_id", sa.String(32)),
        sa.UniqueConstraint("ticket_id", "lapor_followup_id", name="uq_messages_followup"),
    )
    op.create_index("ix_messages_ticket_id", "messages", ["ticket_id"])
    op.create_table(
        "status_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_status_history_ticket_id", "status_history", ["ticket_id"])
    op.create_table(
        "tracker_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("ticket_status", sa.String(20), nullable=False),
        sa.Column("reply", sa.Text),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_tracker_changes_ticket_id", "tracker_changes", ["ticket_id"])
    op.create_table(
        "links",
        sa.Column("tracking_id", sa.String(32), primary_key=True),
        sa.Column("ticket_ref", sa.String(64), nullable=False),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("lapor_status", sa.String(20), nullable=False),
        sa.Column("lapor_updated_at", TS, nullable=False),
        sa.Column("unit_ids", sa.Text, nullable=False),
        sa.Column("seen_followups", sa.Text, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "connector_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("change_id", sa.String(100), nullable=False, unique=True),
        sa.Column("tracking_id", sa.String(32), nullable=False),
        sa.Column("ticket_ref", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False, unique=True),
        sa.Column("lapor_status", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_error", sa.String(100)),
        sa.Column("remote_id", sa.String(32)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
    )
    op.create_index("ix_outbox_tracking_id", "outbox", ["tracking_id"])
    op.create_index("ix_outbox_state", "outbox", ["state"])
    op.create_table(
        "quarantine",
        sa.Column("tracking_id", sa.String(32), primary_key=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("lapor_updated_at", TS),
        sa.Column("unit_ids", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("retry_requested", sa.Boolean, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("error", sa.String(300)),
    )
    op.create_index("ix_runs_kind", "runs", ["kind"])


def downgrade() -> None:
    for table in (
        "runs",
        "quarantine",
        "outbox",
        "connector_state",
        "links",
        "tracker_changes",
        "status_history",
        "messages",
        "tickets",
    ):
        op.drop_table(table)
