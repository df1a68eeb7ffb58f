"""Intake: links remember a fingerprint of LAPOR!'s text and privacy flags.

Later edits on LAPOR! (an admin removing personal data, a complaint made anonim or
rahasia) are detected by it and reach the ticket.

Revision ID: 0002_intake
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_intake"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.drop_column("content_hash")
