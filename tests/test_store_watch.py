"""Telling pollers whether the database changed, without a query."""

from __future__ import annotations

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
    # SQLite or PostgreSQL, whichever the tests run on.
    watch = db.watch()
    watch.mark()
    await commit_a_row(db)
    assert watch.changed() is True
