"""The one place that turns what the service does into channel messages.

Every job transition becomes an event envelope on the owner's
``exports:{uuid}`` and on ``export.{guid}.job`` (and goes to every sink,
such as webhooks), a notification on ``user_notifications_channel:{uuid}``
where a person would want one, and an update on
``user_dashboard_channel:{uuid}``. Progress milestones and the usage warning
are claimed in the database before they are announced, so each fires
exactly once whatever the order of progress reports and however many
processes report.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exporthub.accounts import User
from exporthub.accounts.plans import (
    WARNING_RATIO,
    claim_usage_warning,
    subscription_payload,
    usage,
    usage_of,
)
from exporthub.accounts.users import users_by_uuid
from exporthub.exports import jobs as job_store
from exporthub.exports import messages
from exporthub.exports.constants import (
    ENVELOPE_VERSION,
    MILESTONES,
    RECENT_ACTIVITY,
    SUBSCRIPTION_UPDATED,
    WEBHOOK_ATTEMPTED,
    Channel,
    Dashboard,
    Event,
    Status,
)
from exporthub.exports.jobs import Job
from exporthub.exports.views import file_link
from exporthub.store import Database, job_milestones

logger = logging.getLogger(__name__)

Publish = Callable[[str, Any], Awaitable[Any]]
"""``(channel, data)``: publish JSON-able data, or bytes already JSON."""
Sink = Callable[[str, dict[str, Any]], Awaitable[None]]
"""``(user_uuid, envelope)``: another destination of every event envelope,
such as webhook deliveries. A sink must not raise or block for long."""


class JobEvents:
    """Builds and publishes every message of jobs, plans and downloads.

    Args:
        publish: the channel server's publish function.
        public_url: base of download links.
        db: for milestones, usage and dashboard snapshots.
        sinks: further destinations of every event envelope.
    """

    def __init__(
        self,
        publish: Publish,
        public_url: str,
        db: Database,
        sinks: list[Sink] | None = None,
    ) -> None:
        self._publish = publish
        self._public_url = public_url
        self._db = db
        self.sinks: list[Sink] = list(sinks or [])

    # -- job lifecycle -----------------------------------------------------

    async def created(self, job: Job, user: User) -> None:
        await self._event(user, job, Event.CREATED, url=None)
        await self._dashboard(
            user,
            messages.message(
                Dashboard.NEW_ACTIVITY, messages.activity(job, self._public_url)
            ),
        )
        await self._usage(user)

    async def started(self, job: Job, user: User) -> None:
        await self._notify(user, messages.started(job))
        await self._dashboard(user, messages.activity_update(job, self._public_url))

    async def progress(
        self, job: Job, user: User, current: int, total: int | None
    ) -> None:
        await self._event(
            user,
            job,
            Event.PROGRESS,
            url=None,
            top={"current": current, "total": total},
            details={"totalExported": current, "total": total},
        )
        await self._dashboard(user, messages.activity_update(job, self._public_url))

    async def milestones(
        self, job: Job, user: User, exported: int, total: int | None
    ) -> None:
        """Announce each milestone passed, once per job run."""
        reached = messages.percent(exported, total)
        if reached is None or total is None:
            return
        for mark in MILESTONES:
            if reached >= mark and await self._claim_milestone(job, mark):
                await self._notify(user, messages.milestone(job, mark, exported, total))

    async def finished(self, job: Job, user: User) -> None:
        xlsx = file_link(job, "xlsx", self._public_url)
        await self._event(
            user,
            job,
            Event.FINISHED,
            url=xlsx,
            details={
                "totalExported": job.total_exported,
                "total": job.total,
                "download_link": xlsx,
                "json_url": file_link(job, "json", self._public_url),
            },
        )
        await self._notify(user, messages.completed(job, self._public_url))
        await self._dashboard(user, messages.activity_update(job, self._public_url))
        await self._usage(user)
        await self._dashboard(user, await self.snapshot(user))

    async def failed(self, job: Job, user: User) -> None:
        await self._event(
            user,
            job,
            Event.FAILED,
            url=None,
            details={"error": job.error, "totalExported": job.total_exported},
        )
        await self._notify(user, messages.failed(job))
        await self._dashboard(user, messages.activity_update(job, self._public_url))
        await self._dashboard(user, await self.snapshot(user))

    async def requeued(self, job: Job, user: User, reason: str) -> None:
        details: dict[str, Any] = {"reason": reason, "attempts": job.attempts}
        if job.run_after is not None:
            details["run_after"] = job.run_after.isoformat()
        await self._event(user, job, Event.REQUEUED, url=None, details=details)
        await self._dashboard(user, messages.activity_update(job, self._public_url))

    # -- files -------------------------------------------------------------

    async def converted(self, job: Job, user: User, fmt: str) -> None:
        link = file_link(job, fmt, self._public_url)
        await self._event(
            user,
            job,
            Event.CONVERT_DONE,
            url=link,
            details={"format": fmt, "download_link": link},
        )

    async def convert_failed(self, job: Job, user: User, fmt: str, reason: str) -> None:
        await self._event(
            user,
            job,
            Event.CONVERT_FAILED,
            url=None,
            details={"format": fmt, "error": reason},
        )

    async def bulk(
        self,
        user: User,
        event: Event,
        guid: str,
        url: str | None,
        details: dict[str, Any],
    ) -> None:
        """``bulk_download.ready`` / ``bulk_download.failed`` on ``exports:``."""
        status = Status.DONE if event is Event.BULK_READY else Status.ERROR
        envelope = {
            "version": ENVELOPE_VERSION,
            "event": event.value,
            "guid": guid,
            "status": status.value,
            "url": url,
            "details": {"guid": guid, "status": status.value, **details},
        }
        payload = orjson.dumps(envelope)
        await self._publish(Channel.EXPORTS.format(uuid=user.uuid), payload)
        await self._sink(user, envelope)

    # -- webhooks ----------------------------------------------------------

    async def webhook_attempt(
        self,
        *,
        user_uuid: str,
        job_guid: str | None,
        status: str,
        url: str,
        details: dict[str, Any],
    ) -> None:
        """Report one webhook delivery attempt on ``webhooks:{uuid}``, in the
        standard envelope: ``status`` is the delivery's, ``url`` the endpoint."""
        envelope = {
            "version": ENVELOPE_VERSION,
            "event": WEBHOOK_ATTEMPTED,
            "guid": job_guid,
            "status": status,
            "url": url,
            "details": details,
        }
        await self._publish(
            Channel.WEBHOOKS.format(uuid=user_uuid), orjson.dumps(envelope)
        )

    # -- account -----------------------------------------------------------

    async def subscription_updated(self, user: User) -> None:
        subscription = subscription_payload(user)
        envelope = {
            "version": ENVELOPE_VERSION,
            "event": SUBSCRIPTION_UPDATED,
            "status": subscription["status"],
            "details": subscription,
        }
        await self._publish(Channel.USER.format(uuid=user.uuid), envelope)
        await self._notify(user, messages.subscription_updated(subscription))
        await self._dashboard(
            user, messages.message(Dashboard.SUBSCRIPTION_STATUS, subscription)
        )
        await self._dashboard(user, await self.snapshot(user))

    async def snapshot(self, user: User) -> dict[str, Any]:
        """``complete_update``: recent activity, usage and subscription."""
        async with self._db.engine.connect() as conn:
            return (await self._snapshots(conn, [user]))[user.uuid]

    async def snapshots_by_uuid(self, uuids: list[str]) -> dict[str, bytes]:
        """The encoded ``complete_update`` of each existing user among
        ``uuids``, in three queries however many there are."""
        async with self._db.engine.connect() as conn:
            found = await users_by_uuid(conn, uuids)
            if not found:
                return {}
            built = await self._snapshots(conn, found)
        return {uuid: orjson.dumps(body) for uuid, body in built.items()}

    async def _snapshots(
        self, conn: AsyncConnection, of: list[User]
    ) -> dict[str, dict[str, Any]]:
        ids = [user.id for user in of]
        recent = await job_store.recent_by_user(conn, ids, limit=RECENT_ACTIVITY)
        used = await usage_of(conn, of)
        return {
            user.uuid: messages.message(
                Dashboard.COMPLETE_UPDATE,
                {
                    "activity": [
                        messages.activity(job, self._public_url)
                        for job in recent[user.id]
                    ],
                    "usage": used[user.id].to_payload(),
                    "subscription": subscription_payload(user),
                },
            )
            for user in of
        }

    # -- plumbing ----------------------------------------------------------

    async def _usage(self, user: User) -> None:
        used = await usage(self._db, user)
        payload = used.to_payload()
        await self._dashboard(user, messages.message(Dashboard.USAGE_STATS, payload))
        if used.ratio >= WARNING_RATIO and await claim_usage_warning(
            self._db, user, used.period
        ):
            await self._notify(user, messages.usage_warning(payload))

    async def _claim_milestone(self, job: Job, mark: int) -> bool:
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(
                    job_milestones.insert().values(
                        job_id=job.id, run=job.run, milestone=mark
                    )
                )
        except IntegrityError:
            return False
        return True

    async def claimed_milestones(self, job: Job) -> list[int]:
        """Milestones already announced for the job's current run."""
        async with self._db.engine.connect() as conn:
            rows = await conn.execute(
                select(job_milestones.c.milestone).where(
                    job_milestones.c.job_id == job.id, job_milestones.c.run == job.run
                )
            )
            return sorted(r[0] for r in rows)

    async def _notify(self, user: User, body: dict[str, Any]) -> None:
        await self._publish(Channel.NOTIFICATIONS.format(uuid=user.uuid), body)

    async def _dashboard(self, user: User, body: dict[str, Any]) -> None:
        await self._publish(Channel.DASHBOARD.format(uuid=user.uuid), body)

    async def _event(
        self,
        user: User,
        job: Job,
        event: Event,
        *,
        url: str | None,
        top: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        envelope = envelope_for(job, event, url=url, top=top, details=details)
        payload = orjson.dumps(envelope)
        await self._publish(Channel.EXPORTS.format(uuid=user.uuid), payload)
        await self._publish(Channel.job(job.guid), payload)
        await self._sink(user, envelope)

    async def _sink(self, user: User, envelope: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                await sink(user.uuid, envelope)
            except Exception:
                logger.exception("event sink failed for %s", envelope["event"])


def envelope_for(
    job: Job,
    event: Event,
    *,
    url: str | None,
    top: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The standard event envelope for ``job``."""
    state = job.status.value
    body: dict[str, Any] = {
        "id": job.id,
        "guid": job.guid,
        "status": state,
        "url": job.url,
    }
    if details:
        body.update(details)
    envelope: dict[str, Any] = {
        "version": ENVELOPE_VERSION,
        "event": event.value,
        "guid": job.guid,
        "status": state,
        "url": url,
    }
    if top:
        envelope.update(top)
    envelope["details"] = body
    return envelope
