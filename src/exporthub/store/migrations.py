"""Versioned schema migrations, the same on SQLite and PostgreSQL.

A migration is a numbered function that changes the schema with SQLAlchemy
Core DDL, given a synchronous connection. ``schema_version`` records every
migration applied. :func:`upgrade` applies the missing ones in order, all in
one transaction taken under a lock (an advisory lock on PostgreSQL, the
write lock on SQLite), so that processes starting together against one
database apply each migration exactly once. Every process runs it at start;
``exporthub db upgrade`` runs it on its own.

Changing ``schema.py`` needs a new migration here: each one declares the
tables it creates as they were at its version, so that the schema of an
upgraded database does not depend on when it was created. A test checks
that a migrated database has exactly the schema ``schema.py`` describes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from exporthub.store.db import sqlite_pragmas, utcnow

if TYPE_CHECKING:
    from exporthub.store.db import Database

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x65787068  # "exph": one key for every exporthub database
SQLITE_LOCK_TIMEOUT = 30

_versions = MetaData()
schema_version = Table(
    "schema_version",
    _versions,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema."""

    version: int
    description: str
    apply: Callable[[Connection], None]


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
_ID = BigInteger().with_variant(Integer, "sqlite")


def _v1_tables() -> MetaData:
    """The schema of version 1."""
    m = MetaData()
    users = Table(
        "users",
        m,
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
        m,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("guid", String(36), nullable=False, unique=True),
        Column("user_id", _ID, ForeignKey(users.c.id), nullable=False),
        Column("status", String(16), nullable=False),
        Column("url", Text, nullable=False),
        Column("platform", String(32), nullable=False),
        Column("options", JSON, nullable=False),
        Column("total", Integer, nullable=True),
        Column("total_exported", Integer, nullable=False),
        Column("error", Text, nullable=True),
        Column("files_token", String(64), nullable=True),
        Column("columns", JSON, nullable=True),
        Column("attempts", Integer, nullable=False),
        Column("run", Integer, nullable=False),
        Column("run_after", DateTime(timezone=True), nullable=True),
        Column("locked_by", String(64), nullable=True),
        Column("lease_until", DateTime(timezone=True), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=True),
        Column("finished_at", DateTime(timezone=True), nullable=True),
    )
    Table(
        "job_milestones",
        m,
        Column("job_id", _ID, ForeignKey(jobs.c.id), primary_key=True),
        Column("run", Integer, primary_key=True),
        Column("milestone", Integer, primary_key=True),
    )
    Table(
        "usage_warnings",
        m,
        Column("user_id", _ID, ForeignKey(users.c.id), primary_key=True),
        Column("period", String(7), primary_key=True),
    )
    Table(
        "bulk_downloads",
        m,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("guid", String(36), nullable=False, unique=True),
        Column("user_id", _ID, ForeignKey(users.c.id), nullable=False),
        Column("status", String(16), nullable=False),
        Column("format", String(8), nullable=False),
        Column("jobs", JSON, nullable=False),
        Column("files_token", String(64), nullable=True),
        Column("size", BigInteger, nullable=True),
        Column("error", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True), nullable=True),
    )
    Table(
        "outbox",
        m,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("channel", String(255), nullable=False),
        Column("data", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Index("ix_jobs_user_created", jobs.c.user_id, jobs.c.id)
    Index("ix_jobs_status_run_after", jobs.c.status, jobs.c.run_after)
    return m


def _v1(conn: Connection) -> None:
    # Tables made before migrations existed (by create_all) are kept.
    _v1_tables().create_all(conn, checkfirst=True)


WEBHOOK_TABLES = ("webhooks", "webhook_deliveries", "webhook_attempts")


def _v2_tables() -> MetaData:
    """The webhook tables of version 2."""
    m = MetaData()
    # Only to resolve the foreign keys; it exists since version 1.
    Table("users", m, Column("id", _ID, primary_key=True))
    webhooks = Table(
        "webhooks",
        m,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column(
            "user_id", _ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        Column("url", Text, nullable=False),
        Column("events", JSON, nullable=True),
        Column("secret", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    deliveries = Table(
        "webhook_deliveries",
        m,
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
        Column("attempts", Integer, nullable=False),
        Column("next_attempt_at", DateTime(timezone=True), nullable=False),
        Column("locked_by", String(64), nullable=True),
        Column("lease_until", DateTime(timezone=True), nullable=True),
        Column("redelivery_of", String(36), nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True), nullable=True),
    )
    attempts = Table(
        "webhook_attempts",
        m,
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
        "ix_webhook_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at
    )
    Index(
        "ix_webhook_deliveries_order",
        deliveries.c.webhook_id,
        deliveries.c.job_guid,
        deliveries.c.status,
        deliveries.c.id,
    )
    Index("ix_webhook_attempts_delivery", attempts.c.delivery_id)
    return m


def _v2(conn: Connection) -> None:
    m = _v2_tables()
    tables = [m.tables[name] for name in WEBHOOK_TABLES]
    m.create_all(conn, tables=tables, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of the first release", _v1),
    Migration(2, "webhook endpoints, deliveries and attempts", _v2),
)
LATEST = MIGRATIONS[-1].version


async def upgrade(db: Database) -> list[int]:
    """Apply every migration the database lacks; returns their versions."""
    if db.is_sqlite:
        # A connection of its own, whose transaction starts by taking the
        # write lock: SQLite's driver otherwise runs DDL outside any
        # transaction, and two processes could both see a migration missing.
        engine = create_async_engine(
            db.url, connect_args={"timeout": SQLITE_LOCK_TIMEOUT}
        )
        event.listen(engine.sync_engine, "connect", _manual_transactions)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
        try:
            async with engine.begin() as conn:
                applied = await conn.run_sync(_apply)
        finally:
            await engine.dispose()
    else:
        async with db.engine.begin() as conn:
            await _lock(conn)
            applied = await conn.run_sync(_apply)
    for version in applied:
        logger.info(
            "database migrated to version %d: %s",
            version,
            MIGRATIONS[version - 1].description,
        )
    return applied


async def current_version(db: Database) -> int:
    """The latest migration applied; 0 for a database never migrated."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


async def _lock(conn: AsyncConnection) -> None:
    await conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))


def _apply(conn: Connection) -> list[int]:
    schema_version.create(conn, checkfirst=True)
    current = _current(conn)
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        migration.apply(conn)
        conn.execute(
            insert(schema_version).values(
                version=migration.version,
                description=migration.description,
                applied_at=utcnow(),
            )
        )
        applied.append(migration.version)
    return applied


def _current(conn: Connection) -> int:
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(select(func.max(schema_version.c.version))).scalar() or 0


def _manual_transactions(dbapi_connection: Any, record: object) -> None:
    # The first process to open a new database switches it to WAL here,
    # before any other connection of its own holds a lock.
    sqlite_pragmas(dbapi_connection, record)
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
