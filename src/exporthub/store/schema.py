"""The database schema, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
_ID = BigInteger().with_variant(Integer, "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("api_key_hash", String(64), nullable=False, unique=True),
    Column("plan", String(32), nullable=True),
    Column("plan_status", String(16), nullable=True),
    Column("plan_started_at", DateTime(timezone=True), nullable=True),
    Column("plan_ends_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("guid", String(36), nullable=False, unique=True),
    Column("user_id", _ID, ForeignKey("users.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("platform", String(32), nullable=False),
    Column("options", JSON, nullable=False),
    Column("total", Integer, nullable=True),
    Column("total_exported", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("files_token", String(64), nullable=True),
    Column("columns", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("run", Integer, nullable=False, default=1),
    Column("run_after", DateTime(timezone=True), nullable=True),
    Column("locked_by", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# One row per milestone notification sent: inserting is how "exactly once"
# is decided, across processes and out-of-order progress.
job_milestones = Table(
    "job_milestones",
    metadata,
    Column("job_id", _ID, ForeignKey("jobs.id"), primary_key=True),
    Column("run", Integer, primary_key=True),
    Column("milestone", Integer, primary_key=True),
)

# One row per usage warning sent, per user and period.
usage_warnings = Table(
    "usage_warnings",
    metadata,
    Column("user_id", _ID, ForeignKey("users.id"), primary_key=True),
    Column("period", String(7), primary_key=True),
)

bulk_downloads = Table(
    "bulk_downloads",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("guid", String(36), nullable=False, unique=True),
    Column("user_id", _ID, ForeignKey("users.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("format", String(8), nullable=False),
    Column("jobs", JSON, nullable=False),
    Column("files_token", String(64), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# Messages published by processes that do not serve clients (the command
# line): a serving node publishes them and deletes them.
outbox = Table(
    "outbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("channel", String(255), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

Index("ix_jobs_user_created", jobs.c.user_id, jobs.c.id)
Index("ix_jobs_status_run_after", jobs.c.status, jobs.c.run_after)

# Webhooks: endpoints, one row per event to deliver to one endpoint, and one
# row per attempt. Deleting an endpoint removes its deliveries and attempts.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("user_id", _ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", JSON, nullable=True),
    # Kept as issued: every delivery is signed with it.
    Column("secret", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("guid", String(36), nullable=False, unique=True),
    Column(
        "webhook_id",
        _ID,
        ForeignKey("webhooks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("job_guid", String(36), nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("locked_by", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("redelivery_of", String(36), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        _ID,
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("success", Boolean, nullable=False),
    Column("retry_in", Float, nullable=True),
    Column("response", Text, nullable=True),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
)

Index("ix_webhooks_user", webhooks.c.user_id)
Index(
    "ix_webhook_deliveries_due",
    webhook_deliveries.c.status,
    webhook_deliveries.c.next_attempt_at,
)
Index(
    "ix_webhook_deliveries_order",
    webhook_deliveries.c.webhook_id,
    webhook_deliveries.c.job_guid,
    webhook_deliveries.c.status,
    webhook_deliveries.c.id,
)
Index("ix_webhook_attempts_delivery", webhook_attempts.c.delivery_id)
