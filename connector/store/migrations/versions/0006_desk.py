"""The officer's desk: accounts, server-side sessions, login throttling, the audit log,
one-time form ids, assignment, and each officer message's change record.

Revision ID: 0006_desk
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_desk"
down_revision = "0005_tracker_port"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "desk_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("agencies", sa.Text, nullable=False),  # ",A,B,"
        sa.Column("email", sa.String(254)),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("must_change", sa.Boolean, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "desk_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("desk_users.id"), nullable=False, index=True
        ),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
    )
    op.create_table(
        "desk_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(64), nullable=False, index=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False, index=True),
    )
    op.create_table(
        "desk_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("tracking_id", sa.String(32), index=True),
        sa.Column("detail", sa.String(200)),
    )
    op.create_table(
        "desk_submissions",
        sa.Column("form_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    # Plain ADD COLUMN (nullable): no table rebuild, so the rows referencing tickets stay.
    op.add_column("tickets", sa.Column("assignee", sa.String(64)))
    op.add_column("messages", sa.Column("change_id", sa.Integer))
    op.add_column("status_history", sa.Column("change_id", sa.Integer))
    # The inbox reads open tickets by agency (ix_tickets_agency_status, from 0001) or all
    # of them (an admin), and open complaints held by several agencies: none of it may
    # grow with closed history.
    op.create_index("ix_tickets_status", "tickets", ["status"])
    op.create_index("ix_followup_complaints_closed", "followup_complaints", ["closed"])


def downgrade() -> None:
    op.drop_index("ix_followup_complaints_closed", "followup_complaints")
    op.drop_index("ix_tickets_status", "tickets")
    with op.batch_alter_table("status_history") as batch:
        batch.drop_column("change_id")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("change_id")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("assignee")
    for name in (
        "desk_submissions",
        "desk_audit",
        "desk_login_failures",
        "desk_sessions",
        "desk_users",
    ):
        op.drop_table(name)
