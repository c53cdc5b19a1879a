"""Periodic work of a serving node: publish what other processes left in
the outbox, and expire plans that reached their end date."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from sqlalchemy import delete, select

from exporthub.accounts.plans import expire_due
from exporthub.exports.events import JobEvents, Publish
from exporthub.store import Database, outbox, utcnow

logger = logging.getLogger(__name__)

OUTBOX_BATCH = 200


class Outbox:
    """A publish function for processes that serve no clients: messages are
    stored and a serving node publishes them (see :func:`drain`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def publish(self, channel: str, data: Any) -> None:
        text = data.decode() if isinstance(data, bytes) else orjson.dumps(data).decode()
        async with self.db.engine.begin() as conn:
            await conn.execute(
                outbox.insert().values(channel=channel, data=text, created_at=utcnow())
            )


async def drain(db: Database, publish: Publish) -> int:
    """Publish stored messages in order, then delete them; returns how many.

    A message is deleted only after it was published, so a crash in between
    publishes it twice rather than never.
    """
    async with db.engine.begin() as conn:
        query = select(outbox).order_by(outbox.c.id).limit(OUTBOX_BATCH)
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = (await conn.execute(query)).all()
        for row in rows:
            await publish(row.channel, row.data.encode())
        if rows:
            await conn.execute(
                delete(outbox).where(outbox.c.id.in_([r.id for r in rows]))
            )
    return len(rows)


class Housekeeper:
    """Runs :func:`drain` often and plan expiry now and then.

    Args:
        interval: seconds between outbox checks.
        plan_interval: seconds between checks for expired plans.
    """

    def __init__(
        self,
        db: Database,
        events: JobEvents,
        publish: Publish,
        *,
        interval: float,
        plan_interval: float,
    ) -> None:
        self.db = db
        self.events = events
        self.publish = publish
        self.interval = interval
        self.plan_interval = plan_interval

    async def run(self) -> None:
        last_plans = 0.0
        watch = self.db.watch()
        while True:
            try:
                # Only what another process committed lands in the outbox:
                # with nothing committed since the last look, no query.
                if watch.changed():
                    watch.mark()
                    while await drain(self.db, self.publish) == OUTBOX_BATCH:
                        pass
                if time.monotonic() - last_plans >= self.plan_interval:
                    last_plans = time.monotonic()
                    await self.expire_plans()
            except Exception:
                watch.forget()  # look again next time
                logger.exception("housekeeping failed; trying again")
            await asyncio.sleep(self.interval)

    async def expire_plans(self) -> int:
        expired = await expire_due(self.db)
        for user in expired:
            logger.info("plan %s of %s expired", user.plan, user.email)
            await self.events.subscription_updated(user)
        return len(expired)
