"""Jobs as stored, and every query that moves one between statuses.

Each transition is one conditional UPDATE, so two processes racing on the
same job (a worker finishing it while a user stops it) cannot both win.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from exporthub.exports.constants import ACTIVE, Status
from exporthub.store import Database, jobs, users, utcnow
from exporthub.store.db import as_utc


@dataclass(frozen=True, slots=True)
class Job:
    """One export job."""

    id: int
    guid: str
    user_id: int
    status: Status
    url: str
    platform: str
    options: dict[str, Any]
    total: int | None
    total_exported: int
    error: str | None
    files_token: str | None
    columns: list[str] | None
    attempts: int
    run: int
    run_after: datetime | None
    locked_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def locked(self) -> bool:
        return self.locked_by is not None and self.status is Status.PROGRESS


def _job(row: Row[Any]) -> Job:
    m = row._mapping
    return Job(
        id=m["id"],
        guid=m["guid"],
        user_id=m["user_id"],
        status=Status(m["status"]),
        url=m["url"],
        platform=m["platform"],
        options=m["options"] or {},
        total=m["total"],
        total_exported=m["total_exported"] or 0,
        error=m["error"],
        files_token=m["files_token"],
        columns=m["columns"],
        attempts=m["attempts"] or 0,
        run=m["run"] or 1,
        run_after=as_utc(m["run_after"]),
        locked_by=m["locked_by"],
        created_at=as_utc(m["created_at"]),  # type: ignore[arg-type]
        updated_at=as_utc(m["updated_at"]),  # type: ignore[arg-type]
        started_at=as_utc(m["started_at"]),
        finished_at=as_utc(m["finished_at"]),
    )


async def insert(
    conn: AsyncConnection,
    *,
    user_id: int,
    url: str,
    platform: str,
    options: dict[str, Any],
) -> Job:
    """Queue a new job inside the caller's transaction."""
    now = utcnow()
    values = {
        "guid": str(uuid.uuid4()),
        "user_id": user_id,
        "status": Status.QUEUEING.value,
        "url": url,
        "platform": platform,
        "options": options,
        "total_exported": 0,
        "attempts": 0,
        "run": 1,
        "created_at": now,
        "updated_at": now,
    }
    row = (await conn.execute(jobs.insert().values(**values).returning(jobs))).one()
    return _job(row)


async def get(db: Database, guid: str) -> Job | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(jobs).where(jobs.c.guid == guid))).first()
    return _job(row) if row else None


async def owner_uuid(db: Database, guid: str) -> str | None:
    """The uuid of the user who owns job ``guid``."""
    async with db.engine.connect() as conn:
        return (
            await conn.execute(
                select(users.c.uuid)
                .select_from(jobs.join(users, users.c.id == jobs.c.user_id))
                .where(jobs.c.guid == guid)
            )
        ).scalar()


async def get_by_files_token(db: Database, token: str) -> Job | None:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(jobs).where(jobs.c.files_token == token))
        ).first()
    return _job(row) if row else None


async def page(
    db: Database, user_id: int, *, limit: int, offset: int
) -> tuple[list[Job], int]:
    """A page of the user's jobs, newest first, and how many there are."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(jobs)
                .where(jobs.c.user_id == user_id)
                .order_by(jobs.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).all()
        count = (
            await conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.user_id == user_id)
            )
        ).scalar_one()
    return [_job(r) for r in rows], int(count)


async def recent_by_user(
    conn: AsyncConnection, user_ids: list[int], *, limit: int
) -> dict[int, list[Job]]:
    """The newest ``limit`` jobs of each user, newest first, in one query."""
    rank = (
        func.row_number()
        .over(partition_by=jobs.c.user_id, order_by=jobs.c.id.desc())
        .label("rank")
    )
    ranked = select(jobs, rank).where(jobs.c.user_id.in_(user_ids)).subquery()
    rows = await conn.execute(
        select(ranked)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.user_id, ranked.c.id.desc())
    )
    recent: dict[int, list[Job]] = {user_id: [] for user_id in user_ids}
    for row in rows:
        recent[row.user_id].append(_job(row))
    return recent


async def claim(db: Database, worker_id: str, lease: float) -> Job | None:
    """Take the oldest runnable queued job for ``worker_id``, or None.

    A job is runnable when queued and its ``run_after`` (a retry's backoff)
    has passed. The UPDATE only succeeds while the job is still queued, so
    of two workers racing for one job exactly one gets it.
    """
    now = utcnow()
    async with db.engine.begin() as conn:
        query = (
            select(jobs.c.id)
            .where(
                jobs.c.status == Status.QUEUEING.value,
                or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
            )
            .order_by(jobs.c.id)
            .limit(1)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        job_id = (await conn.execute(query)).scalar()
        if job_id is None:
            return None
        row = (
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == Status.QUEUEING.value)
                .values(
                    status=Status.PROGRESS.value,
                    locked_by=worker_id,
                    lease_until=now + timedelta(seconds=lease),
                    started_at=now,
                    updated_at=now,
                    attempts=jobs.c.attempts + 1,
                    error=None,
                )
                .returning(jobs)
            )
        ).first()
    return _job(row) if row else None


async def next_run_at(db: Database) -> datetime | None:
    """When the earliest queued job becomes runnable."""
    async with db.engine.connect() as conn:
        value = (
            await conn.execute(
                select(func.min(jobs.c.run_after)).where(
                    jobs.c.status == Status.QUEUEING.value
                )
            )
        ).scalar()
    return as_utc(value)


async def _transition(
    db: Database, guid: str, allowed: frozenset[Status] | set[Status], **values: Any
) -> Job | None:
    """Apply ``values`` when the job's status is in ``allowed``."""
    return await _update(
        db, [jobs.c.guid == guid, jobs.c.status.in_([s.value for s in allowed])], values
    )


async def _owned(db: Database, guid: str, worker_id: str, **values: Any) -> Job | None:
    """Apply ``values`` when the job is still running on ``worker_id``: a job
    stopped by its user or taken over by another worker is left alone."""
    return await _update(
        db,
        [
            jobs.c.guid == guid,
            jobs.c.status == Status.PROGRESS.value,
            jobs.c.locked_by == worker_id,
        ],
        values,
    )


async def _update(db: Database, where: list[Any], values: dict[str, Any]) -> Job | None:
    values.setdefault("updated_at", utcnow())
    async with db.engine.begin() as conn:
        row = (
            await conn.execute(
                update(jobs).where(*where).values(**values).returning(jobs)
            )
        ).first()
    return _job(row) if row else None


async def progress(
    db: Database,
    guid: str,
    worker_id: str,
    *,
    exported: int,
    total: int | None,
    lease: float,
) -> Job | None:
    """Record progress and extend the lease; None when the job is no longer
    this worker's (stopped by its user, or requeued)."""
    return await _owned(
        db,
        guid,
        worker_id,
        total_exported=exported,
        total=total,
        lease_until=utcnow() + timedelta(seconds=lease),
    )


async def finish(
    db: Database,
    guid: str,
    worker_id: str,
    *,
    exported: int,
    total: int | None,
    columns: list[str],
) -> Job | None:
    return await _owned(
        db,
        guid,
        worker_id,
        status=Status.DONE.value,
        total_exported=exported,
        total=total if total is not None else exported,
        files_token=secrets.token_urlsafe(24),
        columns=columns,
        locked_by=None,
        lease_until=None,
        finished_at=utcnow(),
    )


async def fail(
    db: Database, guid: str, worker_id: str, *, error: str, exported: int
) -> Job | None:
    return await _owned(
        db,
        guid,
        worker_id,
        status=Status.ERROR.value,
        error=error,
        total_exported=exported,
        locked_by=None,
        lease_until=None,
        finished_at=utcnow(),
    )


async def requeue(
    db: Database,
    guid: str,
    *,
    allowed: frozenset[Status] | set[Status],
    run_after: datetime | None,
    error: str | None,
    reset_attempts: bool = False,
    release_attempt: bool = False,
    worker_id: str | None = None,
    lease_expired: bool = False,
) -> Job | None:
    """Put a job back in the queue (retry, transient failure, lost worker).

    With ``worker_id``, only while that worker still runs it; with
    ``lease_expired``, only while its lease is still expired, so a worker
    that renewed it after being taken for lost keeps its job.
    ``release_attempt`` gives back the attempt that was interrupted (a
    shutdown is not the job's fault).
    """
    values: dict[str, Any] = {
        "status": Status.QUEUEING.value,
        "run_after": run_after,
        "error": error,
        "locked_by": None,
        "lease_until": None,
        "total_exported": 0,
        "finished_at": None,
        "files_token": None,
    }
    if reset_attempts:
        # A retry by the user is a new run: its milestones are announced
        # again. Requeues after failures resume the same run.
        values["attempts"] = 0
        values["run"] = jobs.c.run + 1
    elif release_attempt:
        values["attempts"] = jobs.c.attempts - 1
    if worker_id is not None:
        return await _owned(db, guid, worker_id, **values)
    if not lease_expired:
        return await _transition(db, guid, allowed, **values)
    now = values["updated_at"] = utcnow()
    return await _update(
        db,
        [
            jobs.c.guid == guid,
            jobs.c.status == Status.PROGRESS.value,
            jobs.c.lease_until < now,
        ],
        values,
    )


async def stop(db: Database, guid: str) -> Job | None:
    """Stop a queued or running job; None when it had already ended."""
    now = utcnow()
    return await _transition(
        db,
        guid,
        ACTIVE,
        status=Status.STOPPED.value,
        error="stopped by the user",
        locked_by=None,
        lease_until=None,
        finished_at=now,
        updated_at=now,
    )


async def expired_leases(db: Database) -> list[Job]:
    """Running jobs whose worker stopped renewing its lease."""
    now = utcnow()
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(jobs).where(
                    and_(
                        jobs.c.status == Status.PROGRESS.value,
                        jobs.c.lease_until < now,
                    )
                )
            )
        ).all()
    return [_job(r) for r in rows]
