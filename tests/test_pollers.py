"""The background pollers look for other processes' work only when the
database changed (SQLite), and still when a time they know of comes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from exporthub.config import Settings
from exporthub.exports import worker as worker_module
from exporthub.exports.housekeeping import Housekeeper, Outbox
from exporthub.exports.worker import Worker
from exporthub.store import Database
from exporthub.store import db as store_db
from exporthub.webhooks import dispatcher as dispatcher_module
from exporthub.webhooks.dispatcher import Dispatcher


@pytest.fixture
async def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The server's database, and a second handle on the same file: another
    process. No safety-net query within a test."""
    monkeypatch.setattr(store_db, "MAX_QUIET", 3600.0)
    url = f"sqlite:///{tmp_path}/pollers.sqlite"
    ours, theirs = Database(url), Database(url)
    await ours.create()
    try:
        yield ours, theirs
    finally:
        await theirs.close()
        await ours.close()


async def test_the_outbox_is_drained_when_another_process_writes_to_it(files) -> None:
    ours, theirs = files
    published: list[tuple[str, bytes]] = []

    async def publish(channel: str, data: bytes) -> None:
        published.append((channel, data))

    keeper = Housekeeper(
        ours,
        None,
        publish,
        interval=0.02,
        plan_interval=3600,  # type: ignore[arg-type]
    )
    running = asyncio.ensure_future(keeper.run())
    try:
        await asyncio.sleep(0.1)
        await Outbox(theirs).publish("user:u1", {"n": 1})
        for _ in range(100):
            if published:
                break
            await asyncio.sleep(0.02)
        assert published == [("user:u1", b'{"n":1}')]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_an_idle_worker_waits_without_queries_until_the_database_changes(
    files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = files
    monkeypatch.setattr(worker_module, "IDLE_POLL", 0.02)
    monkeypatch.setenv("EXPORTHUB_DATA_DIR", str(tmp_path))
    worker = Worker(ours, Settings.from_env(), None)  # type: ignore[arg-type]
    worker._watch.mark()
    idle = asyncio.ensure_future(worker._idle())
    await asyncio.sleep(0.3)  # fifteen poll intervals, nothing committed
    assert not idle.done()
    await Outbox(theirs).publish("user:u1", {"n": 1})  # any commit elsewhere
    await asyncio.wait_for(idle, 2)


async def test_a_woken_worker_stops_idling_at_once(
    files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _ = files
    monkeypatch.setenv("EXPORTHUB_DATA_DIR", str(tmp_path))
    worker = Worker(ours, Settings.from_env(), None)  # type: ignore[arg-type]
    worker._watch.mark()
    idle = asyncio.ensure_future(worker._idle())
    await asyncio.sleep(0.05)
    worker.wake()
    await asyncio.wait_for(idle, 2)


async def test_an_idle_dispatcher_looks_again_only_when_the_database_changes(
    files, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = files
    monkeypatch.setattr(dispatcher_module, "POLL_INTERVAL", 0.02)
    looks: list[int] = []
    real_due = dispatcher_module.store.due

    async def counted_due(*args: Any, **kwargs: Any) -> Any:
        looks.append(1)
        return await real_due(*args, **kwargs)

    monkeypatch.setattr(dispatcher_module.store, "due", counted_due)
    dispatcher = Dispatcher(ours, Settings.from_env().webhooks, report=None)  # type: ignore[arg-type]
    running = asyncio.ensure_future(dispatcher.run())
    try:
        await asyncio.sleep(0.1)
        settled = len(looks)
        await asyncio.sleep(0.3)  # fifteen poll intervals, nothing committed
        assert len(looks) == settled == 1
        await Outbox(theirs).publish("user:u1", {"n": 1})  # a commit elsewhere
        for _ in range(100):
            if len(looks) > settled:
                break
            await asyncio.sleep(0.02)
        assert len(looks) == settled + 1
    finally:
        await dispatcher.stop(grace=1)
        await asyncio.wait_for(running, 5)
