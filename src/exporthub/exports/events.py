"""The one place that turns job transitions into channel messages.

Every event goes to the owner's ``exports:{uuid}`` channel and to the job's
own ``export.{guid}.job`` channel, in the envelope clients of the export API
expect: ``version``, ``event``, ``guid``, ``status``, ``url``, ``details``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from exporthub.exports.constants import (
    ENVELOPE_VERSION,
    WEBHOOK_ATTEMPTED,
    Channel,
    Event,
    Status,
)
from exporthub.exports.jobs import Job
from exporthub.exports.views import file_link

logger = logging.getLogger(__name__)

Publish = Callable[[str, Any], Awaitable[Any]]
"""``(channel, data)``: publish JSON-able data, or bytes already JSON."""
Sink = Callable[[str, dict[str, Any]], Awaitable[None]]
"""``(user_uuid, envelope)``: another destination of every job event, such
as webhook deliveries. A sink must not raise; it must not block for long."""


class JobEvents:
    """Builds and publishes the events of jobs.

    Args:
        publish: the channel server's publish function.
        public_url: base of download links.
        sinks: further destinations of every envelope, after the channels.
    """

    def __init__(
        self, publish: Publish, public_url: str, sinks: list[Sink] | None = None
    ) -> None:
        self._publish = publish
        self._public_url = public_url
        self.sinks: list[Sink] = list(sinks or [])

    async def created(self, job: Job, user_uuid: str) -> None:
        await self._send(user_uuid, job, Event.CREATED, url=None)

    async def progress(
        self, job: Job, user_uuid: str, current: int, total: int | None
    ) -> None:
        await self._send(
            user_uuid,
            job,
            Event.PROGRESS,
            url=None,
            top={"current": current, "total": total},
            details={"totalExported": current, "total": total},
        )

    async def finished(self, job: Job, user_uuid: str) -> None:
        xlsx = file_link(job, "xlsx", self._public_url)
        await self._send(
            user_uuid,
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

    async def failed(self, job: Job, user_uuid: str) -> None:
        await self._send(
            user_uuid,
            job,
            Event.FAILED,
            url=None,
            details={"error": job.error, "totalExported": job.total_exported},
        )

    async def requeued(self, job: Job, user_uuid: str, reason: str) -> None:
        details: dict[str, Any] = {"reason": reason, "attempts": job.attempts}
        if job.run_after is not None:
            details["run_after"] = job.run_after.isoformat()
        await self._send(user_uuid, job, Event.REQUEUED, url=None, details=details)

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

    async def _send(
        self,
        user_uuid: str,
        job: Job,
        event: Event,
        *,
        url: str | None,
        top: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        envelope = envelope_for(job, event, url=url, top=top, details=details)
        payload = orjson.dumps(envelope)
        await self._publish(Channel.EXPORTS.format(uuid=user_uuid), payload)
        await self._publish(Channel.job(job.guid), payload)
        for sink in self.sinks:
            try:
                await sink(user_uuid, envelope)
            except Exception:
                logger.exception("event sink failed for %s", event.value)


def envelope_for(
    job: Job,
    event: Event,
    *,
    url: str | None,
    top: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    status: Status | None = None,
) -> dict[str, Any]:
    """The standard event envelope for ``job``."""
    state = (status or job.status).value
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
