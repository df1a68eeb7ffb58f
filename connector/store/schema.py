"""Table definitions for queries. The DDL itself lives in the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
TS = DateTime(timezone=True)

# -- the built-in tracker -------------------------------------------------------------------

tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tracking_id", String(32), nullable=False, unique=True),
    Column("agency", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("lapor_status", String(20), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("classification", String(32), nullable=False),
    Column("category", String(200)),
    Column("channel", String(20), nullable=False),
    Column("anonymous", Boolean, nullable=False),
    Column("confidential", Boolean, nullable=False),
    Column("reporter_name", Text),
    Column("reporter_email", Text),
    Column("reporter_phone", Text),
    Column("location", Text),  # JSON
    Column("attachments", Text, nullable=False),  # JSON list of metadata
    Column("submitted_at", TS, nullable=False),
    Column("due_at", TS),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("assignee", String(64)),  # a desk user's login
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("direction", String(10), nullable=False),  # in | out | internal
    Column("author", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("at", TS, nullable=False),
    Column("source", String(10), nullable=False),  # lapor | officer | sync
    Column("lapor_followup_id", String(32)),
    Column("change_id", Integer),  # an officer's public reply: its tracker_changes row
    UniqueConstraint("ticket_id", "lapor_followup_id", name="uq_messages_followup"),
)

status_history = Table(
    "status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("source", String(10), nullable=False),  # lapor | officer
    Column("reason", String(200)),
    Column("at", TS, nullable=False),
    Column("change_id", Integer),  # an officer's change: its tracker_changes row
)

# Officer actions only: what the push side reads. Sync-applied changes never land here.
tracker_changes = Table(
    "tracker_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=False, index=True),
    Column("status", String(20)),  # the new status, when the officer changed it
    Column("ticket_status", String(20), nullable=False),  # the ticket's status after the change
    Column("reply", Text),
    Column("at", TS, nullable=False),
)

# -- the officer's desk (`lapor-connector web`) ------------------------------------------------

desk_users = Table(
    "desk_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(10), nullable=False),  # petugas | pimpinan | admin
    Column("agencies", Text, nullable=False),  # ",A,B,"
    Column("email", String(254)),
    Column("password_hash", String(200), nullable=False),  # argon2id
    Column("must_change", Boolean, nullable=False),  # an admin set it: change at next login
    Column("disabled", Boolean, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("notify", String(100)),  # ",baru,tugas," what e-mail the user chose; NULL: default
)

# Only a hash of the cookie's token is stored: a copy of the database opens no session.
desk_sessions = Table(
    "desk_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("desk_users.id"), nullable=False, index=True),
    Column("created_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
)

desk_login_failures = Table(
    "desk_login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False, index=True),
    Column("address", String(64), nullable=False),
    Column("at", TS, nullable=False, index=True),
)

desk_audit = Table(
    "desk_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("login", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("tracking_id", String(32), index=True),
    Column("detail", String(200)),  # never complaint text
)

# One row per answer form submitted: the same form twice records one change.
desk_submissions = Table(
    "desk_submissions",
    metadata,
    Column("form_id", String(64), primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("ticket_id", Integer, nullable=False),
    Column("at", TS, nullable=False),
)

# -- e-mail notifications (connector/notify/) -------------------------------------------------

# One row per event and recipient, written in the transaction of the change that causes
# it. The sender bundles a recipient's rows into one message, whose Message-ID is stored
# before the first attempt: a resend after a crash carries the same one.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event", String(12), nullable=False),  # baru | tugas | balasan | ringkasan | gagal
    Column("recipient", String(254), nullable=False, index=True),
    Column("agency", String(64)),
    Column("tracking_id", String(32)),
    Column("payload", Text, nullable=False),  # JSON: what the message says (no complaint text)
    Column("hold_pull", Boolean, nullable=False),  # waits for the end of its pull
    Column("state", String(10), nullable=False, index=True),  # pending | sent | failed
    Column("created_at", TS, nullable=False),
    Column("message_id", String(200), index=True),  # its bundle, once bundled
    Column("bundled_at", TS),  # the bundle's Date
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", TS),
    Column("last_error", String(200)),
    Column("sending", Boolean, nullable=False),  # an attempt started, its answer unrecorded
    Column("unsure", Integer, nullable=False),  # attempts whose answer a crash lost
    Column("sent_at", TS),
)

# -- the connector's own state --------------------------------------------------------------

links = Table(
    "links",
    metadata,
    Column("tracking_id", String(32), primary_key=True),
    Column("ticket_ref", String(64), nullable=False),
    Column("agency", String(64), nullable=False),
    Column("lapor_status", String(20), nullable=False),
    Column("lapor_updated_at", TS, nullable=False),
    Column("unit_ids", Text, nullable=False),  # JSON list
    Column("seen_followups", Text, nullable=False),  # JSON list of follow-up ids
    Column("closed", Boolean, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("content_hash", String(64)),  # title, body, anonim, rahasia as last applied
)

kv = Table(
    "connector_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", String(100), nullable=False, unique=True),
    Column("tracking_id", String(32), nullable=False, index=True),
    Column("ticket_ref", String(64), nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("lapor_status", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("state", String(12), nullable=False, index=True),
    # pending | unconfirmed (delivered, answer unreadable) | sent | failed | dismissed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", TS),
    Column("last_error", String(100)),
    Column("remote_id", String(32)),
    Column("created_at", TS, nullable=False),
    Column("sent_at", TS),
    # Fixed when the entry is created, so a replay's body never changes.
    Column("unit_id", Integer),
    Column("first_attempt_at", TS),  # the first POST of any key: verification looks from here
    Column("key_first_used_at", TS),  # the first POST with the current key: its lifetime
    Column("key_changes", Integer, nullable=False, server_default="0"),
    Column("checks", Integer, nullable=False, server_default="0"),  # verifications not found
    Column("dismiss_reason", String(500)),
    Column("dismissed_at", TS),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("tracking_id", String(32), primary_key=True),
    Column("reason", String(40), nullable=False),
    Column("detail", String(500), nullable=False),
    Column("lapor_updated_at", TS),
    Column("unit_ids", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("retry_requested", Boolean, nullable=False),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False, index=True),  # pull | push
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("summary", Text, nullable=False),  # JSON counts
    Column("error", String(300)),
)

# -- LAPOR!'s clock: facts for `report`, `status` and the overdue metric ------------------------

followup_complaints = Table(
    "followup_complaints",
    metadata,
    Column("tracking_id", String(32), primary_key=True),
    Column("agency", String(64), nullable=False, index=True),  # the lead agency (the ticket's)
    Column("agencies", Text, nullable=False),  # ",A,B," every Mahulu agency holding it
    Column("received_at", TS, nullable=False, index=True),  # LAPOR!'s `dibuat`
    Column("settle_by", TS, nullable=False),  # Perpres 76/2013: 60 days
    Column("lapor_status", String(20), nullable=False),
    Column("closed", Boolean, nullable=False),
    Column("updated_at", TS, nullable=False),
)

followup_periods = Table(
    "followup_periods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tracking_id", String(32), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("agency", String(64), nullable=False),
    Column("start", String(20), nullable=False),  # received | objection | redisposition | reopened
    Column("started_at", TS, nullable=False),
    Column("due_at", TS, nullable=False),
    Column("due_source", String(10), nullable=False),  # lapor | computed
    Column("lapor_deadline", TS),
    Column("first_follow_up_at", TS),
    Column("first_follow_up_id", String(32)),
    Column("on_time", Boolean),
    Column("ended_at", TS),
    UniqueConstraint("tracking_id", "seq", name="uq_followup_periods_seq"),
)

# -- trackers outside this database (tracker.kind other than builtin) ----------------------

# The pull's outbox towards the tracker: written in the pull's transaction, applied by the
# tracker worker outside any transaction, strictly in id order per complaint.
tracker_intents = Table(
    "tracker_intents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tracking_id", String(32), nullable=False, index=True),
    Column("kind", String(10), nullable=False),  # create | update | message
    Column("payload", Text),  # JSON; cleared once applied (no content lingers)
    Column("state", String(10), nullable=False, index=True),  # pending | done | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", TS, nullable=False),
    Column("last_error", String(500)),  # reason code and the tracker's field messages
    Column("issue_ref", String(64)),
    Column("created_at", TS, nullable=False),
    Column("done_at", TS),
)

# Each complaint's issue in the external tracker, and the last status an officer set there.
tracker_issues = Table(
    "tracker_issues",
    metadata,
    Column("tracking_id", String(32), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("issue_ref", String(64), nullable=False),
    Column("officer_status", String(20)),
    Column("updated_at", TS, nullable=False),
)
