"""Webhook endpoints, deliveries and attempts as stored, and their queries.

A delivery row is written when the event happens, before anything is sent,
so a restart loses none. A process takes a due delivery with one conditional
UPDATE that sets its lease, like jobs are claimed; the ``attempts`` counter
doubles as the version the claim must still see, so of two processes racing
for one delivery exactly one sends that attempt. A delivery only becomes due
once every earlier delivery of the same job to the same endpoint has ended,
which keeps each job's events in order at each endpoint.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from exporthub.store import Database, users, utcnow
from exporthub.store.db import as_utc
from exporthub.store.schema import webhook_attempts, webhook_deliveries, webhooks
from exporthub.webhooks.constants import (
    INTERRUPTED,
    MAX_WEBHOOKS_PER_USER,
    DeliveryStatus,
)
from exporthub.webhooks.sender import Outcome
from exporthub.webhooks.signing import new_secret

NO_JOB = ""
"""``job_guid`` of an event that belongs to no job."""


class WebhookLimit(Exception):
    """The user already has as many endpoints as allowed."""


class StillPending(Exception):
    """A delivery that is still being attempted cannot be sent again yet."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """A user's endpoint; ``events`` None means every event."""

    id: int
    user_id: int
    url: str
    events: list[str] | None
    secret: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at sending a delivery, and what came of it."""

    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float | None
    success: bool
    retry_in: float | None
    response: str | None
    attempted_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one endpoint."""

    id: int
    guid: str
    webhook_id: int
    job_guid: str
    event: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    redelivery_of: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery ready to be claimed, as it was seen."""

    id: int
    webhook_id: int
    attempts: int
    locked_by: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this process now holds, and where it goes.

    ``send`` is False when the claim only closed an attempt that a stopped
    process left behind and no attempts remain. ``interrupted`` is that
    attempt, recorded.
    """

    delivery: Delivery
    url: str
    secret: str
    user_uuid: str
    claimed_at: datetime
    send: bool
    interrupted: Attempt | None


def _webhook(row: Row[Any]) -> Webhook:
    m = row._mapping
    return Webhook(
        id=m["id"],
        user_id=m["user_id"],
        url=m["url"],
        events=m["events"],
        secret=m["secret"],
        created_at=as_utc(m["created_at"]),  # type: ignore[arg-type]
    )


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(
        id=m["id"],
        guid=m["guid"],
        webhook_id=m["webhook_id"],
        job_guid=m["job_guid"],
        event=m["event"],
        payload=m["payload"],
        status=DeliveryStatus(m["status"]),
        attempts=m["attempts"],
        next_attempt_at=as_utc(m["next_attempt_at"]),  # type: ignore[arg-type]
        redelivery_of=m["redelivery_of"],
        created_at=as_utc(m["created_at"]),  # type: ignore[arg-type]
        finished_at=as_utc(m["finished_at"]),
    )


def _attempt(row: Row[Any]) -> Attempt:
    m = row._mapping
    return Attempt(
        attempt=m["attempt"],
        status_code=m["status_code"],
        error=m["error"],
        duration_ms=m["duration_ms"],
        success=bool(m["success"]),
        retry_in=m["retry_in"],
        response=m["response"],
        attempted_at=as_utc(m["attempted_at"]),  # type: ignore[arg-type]
    )


# -- endpoints ----------------------------------------------------------------


async def create_webhook(
    db: Database, user_id: int, url: str, events: list[str] | None
) -> Webhook:
    """Register an endpoint with a fresh secret.

    Raises:
        WebhookLimit: the user has ``MAX_WEBHOOKS_PER_USER`` already.
    """
    async with db.engine.begin() as conn:
        count = (
            await conn.execute(
                select(func.count())
                .select_from(webhooks)
                .where(webhooks.c.user_id == user_id)
            )
        ).scalar_one()
        if count >= MAX_WEBHOOKS_PER_USER:
            raise WebhookLimit(f"at most {MAX_WEBHOOKS_PER_USER} webhooks per user")
        row = (
            await conn.execute(
                webhooks.insert()
                .values(
                    user_id=user_id,
                    url=url,
                    events=events,
                    secret=new_secret(),
                    created_at=utcnow(),
                )
                .returning(webhooks)
            )
        ).one()
    return _webhook(row)


async def list_webhooks(db: Database, user_id: int) -> list[Webhook]:
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(webhooks)
                .where(webhooks.c.user_id == user_id)
                .order_by(webhooks.c.id)
            )
        ).all()
    return [_webhook(r) for r in rows]


async def get_webhook(db: Database, user_id: int, webhook_id: int) -> Webhook | None:
    """The user's endpoint ``webhook_id``; another user's is None."""
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(webhooks).where(
                    webhooks.c.id == webhook_id, webhooks.c.user_id == user_id
                )
            )
        ).first()
    return _webhook(row) if row else None


async def delete_webhook(db: Database, user_id: int, webhook_id: int) -> bool:
    """Remove an endpoint with its deliveries; False when it was not there."""
    async with db.engine.begin() as conn:
        result = await conn.execute(
            delete(webhooks).where(
                webhooks.c.id == webhook_id, webhooks.c.user_id == user_id
            )
        )
    return result.rowcount == 1


# -- deliveries: stored when the event happens ----------------------------------


async def enqueue(db: Database, user_uuid: str, envelope: dict[str, Any]) -> int:
    """Store one delivery of ``envelope`` per endpoint of the user that
    wants its event; returns how many were stored."""
    event = str(envelope.get("event", ""))
    job_guid = str(envelope.get("guid") or NO_JOB)
    now = utcnow()
    async with db.engine.begin() as conn:
        endpoints = (
            await conn.execute(
                select(webhooks.c.id, webhooks.c.events)
                .select_from(webhooks.join(users, users.c.id == webhooks.c.user_id))
                .where(users.c.uuid == user_uuid)
                .order_by(webhooks.c.id)
            )
        ).all()
        wanted = [e.id for e in endpoints if e.events is None or event in e.events]
        if not wanted:
            return 0
        payload = orjson.dumps(envelope).decode()
        await conn.execute(
            webhook_deliveries.insert(),
            [
                _new_delivery(webhook_id, job_guid, event, payload, now)
                for webhook_id in wanted
            ],
        )
    return len(wanted)


def _new_delivery(
    webhook_id: int,
    job_guid: str,
    event: str,
    payload: str,
    now: datetime,
    redelivery_of: str | None = None,
) -> dict[str, Any]:
    return {
        "guid": str(uuid.uuid4()),
        "webhook_id": webhook_id,
        "job_guid": job_guid,
        "event": event,
        "payload": payload,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "redelivery_of": redelivery_of,
        "created_at": now,
        "updated_at": now,
    }


async def redeliver(db: Database, webhook_id: int, guid: str) -> Delivery | None:
    """Queue the payload of delivery ``guid`` again as a new delivery.

    Returns:
        The new delivery, or None when ``guid`` is not one of this
        endpoint's deliveries.

    Raises:
        StillPending: the delivery has not ended yet.
    """
    now = utcnow()
    async with db.engine.begin() as conn:
        row = (
            await conn.execute(
                select(webhook_deliveries).where(
                    webhook_deliveries.c.webhook_id == webhook_id,
                    webhook_deliveries.c.guid == guid,
                )
            )
        ).first()
        if row is None:
            return None
        original = _delivery(row)
        if original.status is DeliveryStatus.PENDING:
            raise StillPending(f"delivery {guid} is still being attempted")
        values = _new_delivery(
            webhook_id,
            original.job_guid,
            original.event,
            original.payload,
            now,
            redelivery_of=original.guid,
        )
        created = (
            await conn.execute(
                webhook_deliveries.insert()
                .values(**values)
                .returning(webhook_deliveries)
            )
        ).one()
    return _delivery(created)


async def deliveries_page(
    db: Database, webhook_id: int, *, limit: int, offset: int
) -> tuple[list[tuple[Delivery, list[Attempt]]], int]:
    """A page of an endpoint's deliveries, newest first, each with its
    attempts in order, and how many deliveries there are."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.webhook_id == webhook_id)
                .order_by(webhook_deliveries.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).all()
        found = [_delivery(r) for r in rows]
        attempts: dict[int, list[Attempt]] = {d.id: [] for d in found}
        if found:
            for row in (
                await conn.execute(
                    select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id.in_(list(attempts)))
                    .order_by(
                        webhook_attempts.c.delivery_id, webhook_attempts.c.attempt
                    )
                )
            ).all():
                attempts[row.delivery_id].append(_attempt(row))
        total = (
            await conn.execute(
                select(func.count())
                .select_from(webhook_deliveries)
                .where(webhook_deliveries.c.webhook_id == webhook_id)
            )
        ).scalar_one()
    return [(d, attempts[d.id]) for d in found], int(total)


# -- deliveries: claimed and recorded by dispatchers ------------------------------


def _no_earlier_pending() -> Any:
    """True for a delivery with no unfinished delivery of the same job to
    the same endpoint before it."""
    d = webhook_deliveries
    earlier = d.alias("earlier")
    return ~(
        select(earlier.c.id)
        .where(
            earlier.c.webhook_id == d.c.webhook_id,
            earlier.c.job_guid == d.c.job_guid,
            earlier.c.status == DeliveryStatus.PENDING.value,
            earlier.c.id < d.c.id,
        )
        .exists()
    )


def _claimable(now: datetime) -> list[Any]:
    d = webhook_deliveries
    return [
        d.c.status == DeliveryStatus.PENDING.value,
        d.c.next_attempt_at <= now,
        or_(d.c.locked_by.is_(None), d.c.lease_until < now),
        _no_earlier_pending(),
    ]


async def due(
    db: Database, now: datetime, *, skip_webhooks: list[int], limit: int
) -> list[Due]:
    """Deliveries that may be attempted now, oldest due first, leaving out
    the endpoints in ``skip_webhooks`` (already busy here)."""
    d = webhook_deliveries
    query = (
        select(d.c.id, d.c.webhook_id, d.c.attempts, d.c.locked_by, d.c.updated_at)
        .where(*_claimable(now))
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )
    if skip_webhooks:
        query = query.where(d.c.webhook_id.not_in(skip_webhooks))
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        Due(
            id=r.id,
            webhook_id=r.webhook_id,
            attempts=r.attempts,
            locked_by=r.locked_by,
            updated_at=as_utc(r.updated_at),  # type: ignore[arg-type]
        )
        for r in rows
    ]


async def claim(
    db: Database,
    seen: Due,
    owner: str,
    *,
    lease: float,
    max_attempts: int,
) -> Claim | None:
    """Take ``seen`` for ``owner`` for ``lease`` seconds, counting the attempt.

    When ``seen`` still carries an expired claim, its process stopped in the
    middle of an attempt: that attempt is recorded as interrupted, and if it
    was the last one allowed the delivery fails instead of being taken.
    Returns None when another process got there first.
    """
    d = webhook_deliveries
    now = utcnow()
    interrupted = None
    if seen.locked_by is not None:
        interrupted = Attempt(
            attempt=seen.attempts,
            status_code=None,
            error=INTERRUPTED,
            duration_ms=None,
            success=False,
            retry_in=None,
            response=None,
            attempted_at=seen.updated_at,
        )
    send = interrupted is None or seen.attempts < max_attempts
    if send:
        values: dict[str, Any] = {
            "locked_by": owner,
            "lease_until": now + timedelta(seconds=lease),
            "attempts": d.c.attempts + 1,
        }
    else:
        values = {
            "status": DeliveryStatus.FAILED.value,
            "locked_by": None,
            "lease_until": None,
            "finished_at": now,
        }
    async with db.engine.begin() as conn:
        row = (
            await conn.execute(
                update(d)
                .where(
                    d.c.id == seen.id, d.c.attempts == seen.attempts, *_claimable(now)
                )
                .values(updated_at=now, **values)
                .returning(d)
            )
        ).first()
        if row is None:
            return None
        if interrupted is not None:
            await _insert_attempt(conn, seen.id, interrupted)
        endpoint = (
            await conn.execute(
                select(webhooks.c.url, webhooks.c.secret, users.c.uuid)
                .select_from(webhooks.join(users, users.c.id == webhooks.c.user_id))
                .where(webhooks.c.id == row.webhook_id)
            )
        ).one()
    return Claim(
        delivery=_delivery(row),
        url=endpoint.url,
        secret=endpoint.secret,
        user_uuid=endpoint.uuid,
        claimed_at=now,
        send=send,
        interrupted=interrupted,
    )


async def record(
    db: Database,
    claim: Claim,
    owner: str,
    outcome: Outcome,
    *,
    retry_in: float | None,
) -> Delivery | None:
    """Record the attempt ``claim`` was for and release the claim.

    ``retry_in`` None ends a failed delivery; a number schedules the next
    attempt that many seconds from now. Returns the delivery as it now is,
    or None when the claim was no longer held (the endpoint was deleted).
    """
    d = webhook_deliveries
    now = utcnow()
    values: dict[str, Any] = {"locked_by": None, "lease_until": None, "updated_at": now}
    if outcome.success:
        values.update(status=DeliveryStatus.DELIVERED.value, finished_at=now)
    elif retry_in is None:
        values.update(status=DeliveryStatus.FAILED.value, finished_at=now)
    else:
        values["next_attempt_at"] = now + timedelta(seconds=retry_in)
    number = claim.delivery.attempts
    async with db.engine.begin() as conn:
        row = (
            await conn.execute(
                update(d)
                .where(
                    d.c.id == claim.delivery.id,
                    d.c.locked_by == owner,
                    d.c.attempts == number,
                )
                .values(**values)
                .returning(d)
            )
        ).first()
        if row is None:
            return None
        await _insert_attempt(
            conn,
            claim.delivery.id,
            Attempt(
                attempt=number,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                success=outcome.success,
                retry_in=None if outcome.success else retry_in,
                response=outcome.response,
                attempted_at=claim.claimed_at,
            ),
        )
    return _delivery(row)


async def _insert_attempt(conn: AsyncConnection, delivery_id: int, a: Attempt) -> None:
    await conn.execute(
        webhook_attempts.insert().values(
            delivery_id=delivery_id,
            attempt=a.attempt,
            status_code=a.status_code,
            error=a.error,
            duration_ms=a.duration_ms,
            success=a.success,
            retry_in=a.retry_in,
            response=a.response,
            attempted_at=a.attempted_at,
        )
    )


async def next_due(db: Database, now: datetime) -> datetime | None:
    """When a pending delivery next becomes claimable: the earliest retry
    time, or the earliest lease that runs out (its holder may be gone;
    nothing is written when a lease lapses)."""
    d = webhook_deliveries
    pending = d.c.status == DeliveryStatus.PENDING.value
    retry = (
        select(func.min(d.c.next_attempt_at))
        .where(pending, d.c.next_attempt_at > now)
        .scalar_subquery()
    )
    lapse = (
        select(func.min(d.c.lease_until))
        .where(pending, d.c.locked_by.is_not(None), d.c.lease_until > now)
        .scalar_subquery()
    )
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(retry, lapse))).one()
    times = [as_utc(value) for value in row if value is not None]
    return min(times) if times else None  # type: ignore[type-var]


async def prune(db: Database, before: datetime) -> int:
    """Delete deliveries that ended before ``before``, with their attempts."""
    d = webhook_deliveries
    async with db.engine.begin() as conn:
        result = await conn.execute(
            delete(d).where(
                d.c.status != DeliveryStatus.PENDING.value, d.c.finished_at < before
            )
        )
    return result.rowcount
