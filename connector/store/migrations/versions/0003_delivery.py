"""Delivery that never doubles: the posting unit and attempt times per outbox entry,
operator dismissal, and a per-database nonce for Idempotency-Keys.

Revision ID: 0003_delivery
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003_delivery"
down_revision = "0004_followups"

TS = sa.DateTime(timezone=True)
NONCE_KEY = "db_nonce"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("unit_id", sa.Integer))
        batch.add_column(sa.Column("first_attempt_at", TS))
        batch.add_column(sa.Column("key_first_used_at", TS))
        batch.add_column(sa.Column("key_changes", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("checks", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("dismiss_reason", sa.String(500)))
        batch.add_column(sa.Column("dismissed_at", TS))
        # "unconfirmed" (delivered, answer unreadable) is longer than the old states.
        batch.alter_column(
            "state", type_=sa.String(12), existing_type=sa.String(10), existing_nullable=False
        )
    # Entries tried before this version: when is unknown, so take their creation as the
    # first attempt; an old one is then looked up on LAPOR! before it is posted again.
    outbox = sa.table(
        "outbox",
        sa.column("attempts", sa.Integer),
        sa.column("created_at", TS),
        sa.column("first_attempt_at", TS),
        sa.column("key_first_used_at", TS),
    )
    op.execute(
        outbox.update()
        .where(outbox.c.attempts > 0)
        .values(first_attempt_at=outbox.c.created_at, key_first_used_at=outbox.c.created_at)
    )
    # Made once, at creation: a fresh database never reuses an old database's keys.
    kv = sa.table("connector_state", sa.column("key", sa.String), sa.column("value", sa.Text))
    conn = op.get_bind()
    if conn.execute(sa.select(kv.c.key).where(kv.c.key == NONCE_KEY)).first() is None:
        op.bulk_insert(kv, [{"key": NONCE_KEY, "value": secrets.token_hex(5)}])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "state", type_=sa.String(10), existing_type=sa.String(12), existing_nullable=False
        )
        for name in (
            "dismissed_at",
            "dismiss_reason",
            "checks",
            "key_changes",
            "key_first_used_at",
            "first_attempt_at",
            "unit_id",
        ):
            batch.drop_column(name)
    op.execute(sa.text("DELETE FROM connector_state WHERE key = 'db_nonce'"))
