"""The database handle: an async SQLAlchemy engine for SQLite or PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    """Now, timezone-aware, to the microsecond."""
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def async_url(url: str) -> str:
    """Map a plain database URL to its asyncio driver."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


class Database:
    """Owns the engine; every query goes through :attr:`engine`.

    Args:
        url: ``sqlite:///path`` or ``postgresql://...``.
    """

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.removeprefix("sqlite+aiosqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                self.url, connect_args={"timeout": 30}
            )
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=10, pool_pre_ping=True
            )

    async def create(self) -> None:
        """Bring the schema up to date: apply the migrations it lacks."""
        from exporthub.store.migrations import upgrade

        await upgrade(self)

    async def ping(self) -> None:
        """Raise when the database cannot be reached."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """Set up a new SQLite connection (a ``connect`` event listener)."""
    # WAL lets the API read while a worker writes; a busy timeout instead of
    # immediate "database is locked" errors when two writers meet. The
    # timeout comes first: switching to WAL waits for other processes too.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
