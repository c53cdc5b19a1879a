"""What users can do with jobs: create, read, list, retry, stop.

The API and the command line both go through :class:`ExportService`; it
validates, records the transition and publishes its event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from exporthub.accounts import User
from exporthub.accounts.plans import lock_user, usage_in
from exporthub.config import Settings
from exporthub.exports import jobs
from exporthub.exports.constants import Status, job_guid_of
from exporthub.exports.errors import (
    Conflict,
    DomainError,
    InvalidOption,
    NotFound,
    PlatformNotConfigured,
    UnsupportedURL,
)
from exporthub.exports.events import JobEvents
from exporthub.exports.jobs import Job
from exporthub.sources import ExportOptions, OptionError, detect
from exporthub.sources import UnsupportedURL as UnknownPlatform
from exporthub.store import Database

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
COMMON_OPTIONS = ("replies", "limit", "minTimestamp", "maxTimestamp")
RETRYABLE = frozenset({Status.ERROR, Status.STOPPED})


def _no_op(_guid: str | None = None) -> None:
    return None


class UsageLimitReached(DomainError):
    status = 402
    code = "usage_limit_reached"


class ExportService:
    """Job operations on behalf of a user.

    Args:
        db: the database.
        settings: for platform secrets.
        events: publishes job events.
        wake: tells local workers a job is queued.
        cancel: tells a local worker to abandon a job now.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        events: JobEvents,
        *,
        wake: Callable[[], None] = _no_op,
        cancel: Callable[[str], None] = _no_op,
    ) -> None:
        self.db = db
        self.settings = settings
        self.events = events
        self.wake = wake
        self.cancel = cancel

    async def create(self, user: User, url: Any, options: Any) -> Job:
        """Queue an export of ``url`` for ``user``.

        Raises:
            UnsupportedURL: no platform recognises the URL.
            InvalidOption: an option is malformed.
            PlatformNotConfigured: the platform needs a key the operator
                has not set.
        """
        if not isinstance(url, str) or not url.strip():
            raise UnsupportedURL("url is required: the address of a post or video")
        url = url.strip()
        if len(url) > MAX_URL_LENGTH:
            raise UnsupportedURL(f"url is longer than {MAX_URL_LENGTH} characters")
        try:
            adapter, _ref = detect(url)
        except UnknownPlatform as exc:
            raise UnsupportedURL(str(exc)) from exc
        if options is None:
            options = {}
        try:
            ExportOptions.parse(options)
        except OptionError as exc:
            raise InvalidOption(str(exc)) from exc
        known = {*COMMON_OPTIONS, *adapter.option_help}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidOption(
                f"unknown option {unknown[0]!r} for {adapter.name}; it takes "
                f"{', '.join(sorted(known))} (see GET /api/v3/platforms)"
            )
        if adapter.secret_required and adapter.key not in self.settings.source_secrets:
            raise PlatformNotConfigured(
                f"{adapter.name} exports need an API key: the operator must set "
                f"{adapter.secret_setting}"
            )
        async with self.db.engine.begin() as conn:
            await lock_user(conn, user)
            used = await usage_in(conn, user)
            if used.exhausted is not None:
                allowance = used.plan.limits()[used.exhausted]
                what = "exports" if used.exhausted == "exports" else "exported comments"
                raise UsageLimitReached(
                    f"the {used.plan.name} plan allows {allowance} {what} a month "
                    "and this month's are used up; nothing was queued. Upgrade "
                    "the plan or wait for the next month"
                )
            job = await jobs.insert(
                conn, user_id=user.id, url=url, platform=adapter.key, options=options
            )
        logger.info("job %s queued for %s (%s)", job.guid, user.uuid, adapter.key)
        await self.events.created(job, user)
        self.wake()
        return job

    async def get(self, user: User, guid: str) -> Job:
        """The user's job ``guid``; another user's job is not found."""
        job = await jobs.get(self.db, guid)
        if job is None or job.user_id != user.id:
            raise NotFound(f"no job {guid}")
        return job

    async def page(self, user: User, page: int, per_page: int) -> tuple[list[Job], int]:
        return await jobs.page(
            self.db, user.id, limit=per_page, offset=(page - 1) * per_page
        )

    async def retry(self, user: User, guid: str) -> Job:
        """Queue a failed or stopped job again, from the start."""
        job = await self.get(user, guid)
        if job.status not in RETRYABLE:
            raise Conflict(
                f"job {guid} is {job.status.value}; only failed or stopped jobs "
                "can be retried"
            )
        requeued = await jobs.requeue(
            self.db,
            guid,
            allowed=RETRYABLE,
            run_after=None,
            error=None,
            reset_attempts=True,
        )
        if requeued is None:
            raise Conflict(f"job {guid} changed meanwhile; try again")
        await self.events.requeued(requeued, user, "retried by the user")
        self.wake()
        return requeued

    async def stop(self, user: User, guid: str) -> Job:
        """Stop a queued or running job; clients get ``job.failed``."""
        job = await self.get(user, guid)
        stopped = await jobs.stop(self.db, guid)
        if stopped is None:
            raise Conflict(f"job {guid} has already ended ({job.status.value})")
        self.cancel(guid)
        logger.info("job %s stopped by its user", guid)
        await self.events.failed(stopped, user)
        return stopped

    async def owns_channel(self, user_uuid: str, channel: str) -> bool:
        """Whether ``channel`` is ``export.{guid}.job`` of this user's job."""
        guid = job_guid_of(channel)
        if guid is None:
            return False
        return await jobs.owner_uuid(self.db, guid) == user_uuid
