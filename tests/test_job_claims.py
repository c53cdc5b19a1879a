"""Workers sharing one queue, on SQLite and on the real PostgreSQL: no job
is run twice at once, and a lost job is requeued once."""

from __future__ import annotations

import asyncio
from collections import Counter

from exporthub.accounts import create_user
from exporthub.exports import jobs
from exporthub.exports.constants import Status
from exporthub.store import Database

JOBS = 24
WORKERS = 4
LEASE = 30.0
EXPIRED = -1.0
STORY = "https://news.ycombinator.com/item?id=8863"


async def queue(db: Database, count: int) -> list[str]:
    user, _ = await create_user(db, "alice@example.com")
    async with db.engine.begin() as conn:
        queued = [
            await jobs.insert(
                conn, user_id=user.id, url=STORY, platform="hackernews", options={}
            )
            for _ in range(count)
        ]
    return [job.guid for job in queued]


async def test_workers_claiming_together_get_every_job_exactly_once(
    db: Database, database_url: str
) -> None:
    guids = await queue(db, JOBS)
    workers = [Database(database_url) for _ in range(WORKERS)]

    async def claim_all(worker: Database, worker_id: str) -> list[str]:
        claimed = []
        while (job := await jobs.claim(worker, worker_id, LEASE)) is not None:
            claimed.append(job.guid)
        return claimed

    try:
        results = await asyncio.gather(
            *(claim_all(w, f"worker-{n}") for n, w in enumerate(workers))
        )
    finally:
        for worker in workers:
            await worker.close()
    claims = Counter(guid for claimed in results for guid in claimed)
    assert sorted(claims) == sorted(guids)
    assert set(claims.values()) == {1}


async def test_a_lost_job_is_requeued_once_by_racing_reapers(db: Database) -> None:
    [guid] = await queue(db, 1)
    await jobs.claim(db, "lost", EXPIRED)
    [lost] = await jobs.expired_leases(db)
    results = await asyncio.gather(
        *(
            jobs.requeue(
                db,
                lost.guid,
                allowed={Status.PROGRESS},
                run_after=None,
                error="lost",
                lease_expired=True,
            )
            for _ in range(WORKERS)
        )
    )
    assert [r.guid for r in results if r is not None] == [guid]


async def test_a_job_whose_lease_was_renewed_after_it_looked_lost_is_kept(
    db: Database,
) -> None:
    await queue(db, 1)
    await jobs.claim(db, "slow", EXPIRED)
    [looked_lost] = await jobs.expired_leases(db)
    renewed = await jobs.progress(
        db, looked_lost.guid, "slow", exported=3, total=5, lease=LEASE
    )
    requeued = await jobs.requeue(
        db,
        looked_lost.guid,
        allowed={Status.PROGRESS},
        run_after=None,
        error="lost",
        lease_expired=True,
    )
    current = await jobs.get(db, looked_lost.guid)
    assert renewed is not None
    assert requeued is None
    assert current is not None
    assert (current.status, current.locked_by) == (Status.PROGRESS, "slow")


async def test_a_job_reclaimed_after_a_requeue_is_not_requeued_by_a_late_reaper(
    db: Database,
) -> None:
    await queue(db, 1)
    await jobs.claim(db, "lost", EXPIRED)
    [lost] = await jobs.expired_leases(db)
    first = await jobs.requeue(
        db,
        lost.guid,
        allowed={Status.PROGRESS},
        run_after=None,
        error="lost",
        lease_expired=True,
    )
    reclaimed = await jobs.claim(db, "next", LEASE)
    late = await jobs.requeue(
        db,
        lost.guid,
        allowed={Status.PROGRESS},
        run_after=None,
        error="lost",
        lease_expired=True,
    )
    assert first is not None
    assert reclaimed is not None
    assert late is None
    assert (await jobs.get(db, lost.guid)).locked_by == "next"  # type: ignore[union-attr]
