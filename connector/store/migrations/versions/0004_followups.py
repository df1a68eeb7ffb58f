"""LAPOR!'s clock: due periods and first follow-ups per complaint (issue 12).

Existing tickets of the built-in tracker get one period from what is stored: the
ticket's due date, and as first follow-up the earliest follow-up of an agency that the
connector imported or sent. Complaints read again later are completed by the pull.

Revision ID: 0004_followups
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_followups"
down_revision = "0002_intake"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "followup_complaints",
        sa.Column("tracking_id", sa.String(32), primary_key=True),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("agencies", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("settle_by", TS, nullable=False),
        sa.Column("lapor_status", sa.String(20), nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_followup_complaints_agency", "followup_complaints", ["agency"])
    op.create_index("ix_followup_complaints_received_at", "followup_complaints", ["received_at"])
    op.create_table(
        "followup_periods",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tracking_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("start", sa.String(20), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("due_source", sa.String(10), nullable=False),
        sa.Column("lapor_deadline", TS),
        sa.Column("first_follow_up_at", TS),
        sa.Column("first_follow_up_id", sa.String(32)),
        sa.Column("on_time", sa.Boolean),
        sa.Column("ended_at", TS),
        sa.UniqueConstraint("tracking_id", "seq", name="uq_followup_periods_seq"),
    )
    op.create_index("ix_followup_periods_tracking_id", "followup_periods", ["tracking_id"])
    _backfill()


def _backfill() -> None:
    from datetime import UTC, datetime

    from connector.timeutil import add_calendar_days, add_working_days

    def utc(v: datetime) -> datetime:
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v

    conn = op.get_bind()
    names = set(sa.inspect(conn).get_table_names())
    if not {"tickets", "links", "messages", "outbox"} <= names:
        return
    meta = sa.MetaData()
    links = sa.Table("links", meta, autoload_with=conn)
    tickets = sa.Table("tickets", meta, autoload_with=conn)
    messages = sa.Table("messages", meta, autoload_with=conn)
    outbox = sa.Table("outbox", meta, autoload_with=conn)
    complaints = sa.Table("followup_complaints", meta, autoload_with=conn)
    periods = sa.Table("followup_periods", meta, autoload_with=conn)
    first: dict[str, datetime] = {}
    for tid, at in conn.execute(
        sa.select(tickets.c.tracking_id, sa.func.min(messages.c.at))
        .join(messages, messages.c.ticket_id == tickets.c.id)
        .where(messages.c.direction == "out", messages.c.source == "lapor")
        .group_by(tickets.c.tracking_id)
    ):
        first[tid] = utc(at)
    for tid, at in conn.execute(
        sa.select(outbox.c.tracking_id, sa.func.min(outbox.c.sent_at))
        .where(outbox.c.state == "sent")
        .group_by(outbox.c.tracking_id)
    ):
        if at is not None and (tid not in first or utc(at) < first[tid]):
            first[tid] = utc(at)
    now = datetime.now(UTC)
    rows = conn.execute(
        sa.select(
            links.c.tracking_id,
            links.c.agency,
            links.c.lapor_status,
            links.c.closed,
            tickets.c.submitted_at,
            tickets.c.due_at,
        ).join(tickets, tickets.c.tracking_id == links.c.tracking_id)
    ).all()
    for r in rows:
        start = utc(r.submitted_at)
        due = utc(r.due_at) if r.due_at is not None else add_working_days(start, 5)
        fu = first.get(r.tracking_id)
        conn.execute(
            sa.insert(complaints).values(
                tracking_id=r.tracking_id,
                agency=r.agency,
                agencies=f",{r.agency},",
                received_at=start,
                settle_by=add_calendar_days(start, 60),
                lapor_status=r.lapor_status,
                closed=r.closed,
                updated_at=now,
            )
        )
        conn.execute(
            sa.insert(periods).values(
                tracking_id=r.tracking_id,
                seq=1,
                agency=r.agency,
                start="received",
                started_at=start,
                due_at=due,
                due_source="lapor" if r.due_at else "computed",
                lapor_deadline=None,
                first_follow_up_at=fu,
                first_follow_up_id=None,
                on_time=None if fu is None else fu <= due,
                ended_at=None,
            )
        )


def downgrade() -> None:
    op.drop_table("followup_periods")
    op.drop_table("followup_complaints")
