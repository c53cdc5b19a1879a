"""Telling pollers whether the database changed, without a query."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from exporthub.store import Database
from exporthub.store import db as store_db

INSERT = "INSERT INTO outbox (channel, data, created_at) VALUES ('c', '{}', :t)"


@pytest.fixture
async def sqlite_db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path}/watch.sqlite")
    await database.create()
    try:
        yield database
    finally:
        await database.close()


async def commit_a_row(database: Database) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(text(INSERT), {"t": store_db.utcnow()})


async def test_a_commit_after_the_mark_is_seen(sqlite_db: Database) -> None:
    watch = sqlite_db.watch()
    assert watch.changed() is True  # never marked: look
    watch.mark()
    assert watch.changed() is False
    await commit_a_row(sqlite_db)
    assert watch.changed() is True
    watch.mark()
    assert watch.changed() is False


async def test_reading_changes_nothing(sqlite_db: Database) -> None:
    watch = sqlite_db.watch()
    watch.mark()
    async with sqlite_db.engine.connect() as conn:
        await conn.execute(text("SELECT count(*) FROM outbox"))
    assert watch.changed() is False


async def test_a_commit_by_another_process_is_seen(sqlite_db: Database) -> None:
    watch = sqlite_db.watch()
    watch.mark()
    # Another process: a connection of its own, outside the engine.
    path = sqlite_db.url.removeprefix("sqlite+aiosqlite:///")
    other = sqlite3.connect(path)
    try:
        other.execute(INSERT, {"t": "2026-01-01 00:00:00"})
        other.commit()
    finally:
        other.close()
    assert watch.changed() is True


async def test_each_watch_has_its_own_mark(sqlite_db: Database) -> None:
    first, second = sqlite_db.watch(), sqlite_db.watch()
    first.mark()
    await commit_a_row(sqlite_db)
    second.mark()
    assert (first.changed(), second.changed()) == (True, False)


async def test_a_long_quiet_spell_says_changed_anyway(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = sqlite_db.watch()
    watch.mark()
    monkeypatch.setattr(store_db, "MAX_QUIET", 0.0)
    assert watch.changed() is True


async def test_an_in_memory_database_always_says_changed() -> None:
    database = Database("sqlite:///:memory:")
    try:
        watch = database.watch()
        watch.mark()
        assert watch.changed() is True
    finally:
        await database.close()


async def test_any_database_says_changed_after_a_commit(db: Database) -> None:
    # SQLite or PostgreSQL, whichever the tests run on: a SQLite file can
    # tell "unchanged"; PostgreSQL never claims to, its pollers just query.
    watch = db.watch()
    watch.mark()
    assert watch.changed() is not db.is_sqlite
    await commit_a_row(db)
    assert watch.changed() is True


async def test_a_failed_look_forgets_the_mark(sqlite_db: Database) -> None:
    watch = sqlite_db.watch()
    watch.mark()
    assert watch.changed() is False
    watch.forget()
    assert watch.changed() is True


async def test_resting_ends_on_a_commit_elsewhere_and_not_before(
    sqlite_db: Database,
) -> None:
    other = Database(sqlite_db.url.replace("+aiosqlite", ""))
    watch, wake = sqlite_db.watch(), asyncio.Event()
    watch.mark()
    resting = asyncio.ensure_future(watch.rest(wake, poll=0.02, due_in=None))
    try:
        await asyncio.sleep(0.3)  # fifteen looks, nothing committed
        assert not resting.done()
        await commit_a_row(other)
        await asyncio.wait_for(resting, 2)
    finally:
        resting.cancel()
        await other.close()


async def test_resting_ends_when_woken_or_when_something_is_due(
    sqlite_db: Database,
) -> None:
    loop = asyncio.get_running_loop()
    watch, wake = sqlite_db.watch(), asyncio.Event()
    watch.mark()
    started = loop.time()
    await asyncio.wait_for(watch.rest(wake, poll=0.02, due_in=0.15), 2)
    assert 0.14 <= loop.time() - started < 1
    resting = asyncio.ensure_future(watch.rest(wake, poll=0.02, due_in=None))
    await asyncio.sleep(0.1)
    assert not resting.done()
    wake.set()
    await asyncio.wait_for(resting, 2)
