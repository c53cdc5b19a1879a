"""The database handle: an async SQLAlchemy engine for SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

MAX_QUIET = 10.0
"""Seconds a :class:`ChangeWatch` says "unchanged" at most in a row: a
poller still queries that often, for what time alone makes due (a lease
that ran out)."""


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
        self._file: str | None = None
        """The SQLite file whose data version :meth:`data_version` reads."""
        self._versions: sqlite3.Connection | None = None
        self._closed = False
        self._version_failed = False
        self._generation = 0
        if self.is_sqlite:
            parsed = make_url(self.url)
            path = parsed.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                if not parsed.query:
                    self._file = path
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
        self._closed = True
        self._drop_versions()
        await self.engine.dispose()

    def watch(self) -> ChangeWatch:
        """A :class:`ChangeWatch` for one poller."""
        return ChangeWatch(self)

    def data_version(self) -> tuple[int, int] | None:
        """A value that changes whenever any connection of any process
        commits to this SQLite file (``PRAGMA data_version``, read on a
        connection of its own that never writes, paired with that
        connection's number: versions of two connections do not compare);
        None when it cannot tell (PostgreSQL, an in-memory database, after
        :meth:`close`, an error)."""
        if self._file is None or self._closed:
            return None
        try:
            if self._versions is None:
                # Never waits for a lock: the event loop runs this. A busy
                # database answers None, "may have changed", and the
                # poller queries as it would without a watch.
                self._versions = sqlite3.connect(self._file, timeout=0)
                self._generation += 1
            row = self._versions.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            if not self._version_failed:
                self._version_failed = True
                logger.warning("cannot read the SQLite data version: %s", exc)
            self._drop_versions()  # opened afresh next time
            return None
        self._version_failed = False
        return (self._generation, int(row[0]))

    def _drop_versions(self) -> None:
        if self._versions is not None:
            self._versions.close()
            self._versions = None


class ChangeWatch:
    """Whether the database may have changed since a poller last looked.

    Through aiosqlite every query is several hand-offs between the event
    loop and the driver's thread, about half a millisecond of CPU each
    time, and the job worker, the webhook dispatcher and the outbox each
    polled their table every second or two, even with nothing to do. With a
    SQLite file they now read ``PRAGMA data_version`` (microseconds, no
    thread) and skip the query when nothing was committed since they last
    looked; at most every ``MAX_QUIET`` seconds they query anyway. For
    PostgreSQL, where a query costs no thread, :meth:`changed` is always
    True.

    Call :meth:`mark` right before the queries, and :meth:`changed` later:
    a commit made after the mark, even while the queries ran, is seen.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._version: tuple[int, int] | None = None
        self._marked_at = 0.0

    def mark(self) -> None:
        self._version = self._db.data_version()
        self._marked_at = time.monotonic()

    def forget(self) -> None:
        """Say "changed" until the next mark (the last look failed)."""
        self._version = None

    def changed(self) -> bool:
        if self._version is None:
            return True
        if time.monotonic() - self._marked_at >= MAX_QUIET:
            return True
        return self._db.data_version() != self._version

    async def rest(
        self, wake: asyncio.Event, *, poll: float, due_in: float | None
    ) -> None:
        """Wait until ``wake`` is set, until something is due (in ``due_in``
        seconds; None: nothing is), or until the database changed, looking
        every ``poll`` seconds."""
        loop = asyncio.get_running_loop()
        due_at = None if due_in is None else loop.time() + due_in
        while True:
            pause = poll if due_at is None else min(poll, due_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, pause))
                return
            if due_at is not None and loop.time() >= due_at:
                return
            if self.changed():
                return


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
