"""Dashboard snapshots of many users at once, on SQLite and on PostgreSQL:
each user gets exactly what a snapshot of that user alone would say."""

from __future__ import annotations

from datetime import timedelta

import orjson
from sqlalchemy import update

from exporthub.accounts import User, create_user
from exporthub.exports import jobs as job_store
from exporthub.exports.events import JobEvents
from exporthub.store import Database, jobs, utcnow

STORY = "https://news.ycombinator.com/item?id=8863"
PUBLIC_URL = "http://127.0.0.1:8000"


async def give_jobs(db: Database, user: User, exported: list[int]) -> list[str]:
    """One job per entry, each with that many comments exported; guids in
    the order created."""
    guids = []
    async with db.engine.begin() as conn:
        for count in exported:
            job = await job_store.insert(
                conn, user_id=user.id, url=STORY, platform="hackernews", options={}
            )
            await conn.execute(
                update(jobs).where(jobs.c.id == job.id).values(total_exported=count)
            )
            guids.append(job.guid)
    return guids


def without_time(snapshot: dict) -> dict:
    return {k: v for k, v in snapshot.items() if k != "timestamp"}


async def test_each_user_gets_their_own_snapshot_from_one_batch(db: Database) -> None:
    events = JobEvents(_nowhere, PUBLIC_URL, db)
    alice, _ = await create_user(db, "alice@example.com")
    bob, _ = await create_user(db, "bob@example.com")
    carol, _ = await create_user(db, "carol@example.com")
    alices = await give_jobs(db, alice, list(range(1, 13)))
    bobs = await give_jobs(db, bob, [7])
    # One of Alice's jobs is from last month: listed, but not in this
    # month's usage.
    async with db.engine.begin() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.guid == alices[0])
            .values(created_at=utcnow() - timedelta(days=40))
        )

    unknown = "00000000-0000-4000-8000-000000000000"
    encoded = await events.snapshots_by_uuid(
        [alice.uuid, unknown, bob.uuid, carol.uuid]
    )

    assert sorted(encoded) == sorted([alice.uuid, bob.uuid, carol.uuid])
    got = {uuid: orjson.loads(body) for uuid, body in encoded.items()}
    assert {g["type"] for g in got.values()} == {"complete_update"}
    assert [a["id"] for a in got[alice.uuid]["payload"]["activity"]] == (
        alices[::-1][:10]
    )
    assert [a["exportedItems"] for a in got[alice.uuid]["payload"]["activity"]] == (
        list(range(12, 2, -1))
    )
    assert [a["id"] for a in got[bob.uuid]["payload"]["activity"]] == bobs
    assert got[carol.uuid]["payload"]["activity"] == []
    usage = {uuid: g["payload"]["usage"] for uuid, g in got.items()}
    assert (usage[alice.uuid]["exports"], usage[alice.uuid]["items"]) == (11, 77)
    assert (usage[bob.uuid]["exports"], usage[bob.uuid]["items"]) == (1, 7)
    assert (usage[carol.uuid]["exports"], usage[carol.uuid]["items"]) == (0, 0)
    for user in (alice, bob, carol):
        alone = await events.snapshot(user)
        assert without_time(got[user.uuid]) == without_time(alone)


async def test_no_known_user_means_no_snapshot(db: Database) -> None:
    events = JobEvents(_nowhere, PUBLIC_URL, db)
    assert await events.snapshots_by_uuid(["nobody", "no-one"]) == {}


async def _nowhere(channel: str, data: object) -> None:
    raise AssertionError(f"nothing is published by a snapshot, got {channel}")
