"""Conversions of finished exports and bulk ZIP downloads, run in the
background; each ends with its event on ``exports:{uuid}``."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy import Row, select, update

from exporthub import formats
from exporthub.accounts import User
from exporthub.config import Settings
from exporthub.exports import jobs
from exporthub.exports.constants import Event, Status
from exporthub.exports.errors import Conflict, Forbidden, Invalid, NotFound
from exporthub.exports.events import JobEvents
from exporthub.exports.jobs import Job
from exporthub.exports.views import file_name
from exporthub.store import Database, bulk_downloads, utcnow

logger = logging.getLogger(__name__)

CANONICAL = "ndjson"
"""The copy every conversion reads from: one record per line."""
MAX_BULK_JOBS = 100
BULK_NAME = "exporthub-{guid}.zip"


class UnknownFormat(Invalid):
    code = "unknown_format"


class NotFinished(Conflict):
    code = "job_not_finished"


def _check_format(fmt: Any) -> str:
    if not isinstance(fmt, str) or fmt not in formats.FORMATS:
        names = ", ".join(formats.FORMATS)
        raise UnknownFormat(f"format must be one of {names}")
    return fmt


class Downloads:
    """Starts conversions and bulk downloads, and finds their files.

    Args:
        db: the database.
        settings: data directory and public URL.
        events: announces the results.
    """

    def __init__(self, db: Database, settings: Settings, events: JobEvents) -> None:
        self.db = db
        self.settings = settings
        self.events = events
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def files_dir(self) -> Path:
        return self.settings.data_dir / "files"

    @property
    def bulk_dir(self) -> Path:
        return self.settings.data_dir / "bulk"

    def job_file(self, job: Job, fmt: str) -> Path:
        return self.files_dir / job.guid / file_name(job, fmt)

    # -- conversion ----------------------------------------------------------

    async def convert(self, user: User, job: Job, fmt: Any) -> dict[str, Any]:
        """Start converting ``job`` to ``fmt``.

        Raises:
            UnknownFormat: ``fmt`` is not a supported format.
            NotFinished: the job has no files yet.
        """
        fmt = _check_format(fmt)
        if job.status is not Status.DONE:
            raise NotFinished(
                f"job {job.guid} is {job.status.value}; only finished jobs convert"
            )
        self._spawn(self._convert(user, job, fmt))
        return {"guid": job.guid, "format": fmt, "status": "queued"}

    async def _convert(self, user: User, job: Job, fmt: str) -> None:
        try:
            await self.ensure(job, fmt)
        except Exception as exc:
            logger.warning("converting job %s to %s failed: %s", job.guid, fmt, exc)
            await self.events.convert_failed(job, user, fmt, _reason(exc))
            return
        logger.info("job %s converted to %s", job.guid, fmt)
        await self.events.converted(job, user, fmt)

    async def ensure(self, job: Job, fmt: str) -> Path:
        """The job's file in ``fmt``, converting from the canonical copy if
        it does not exist yet."""
        target = self.job_file(job, fmt)
        if not target.exists():
            source = self.job_file(job, CANONICAL)
            if not source.exists():
                raise FileNotFoundError(f"the records of job {job.guid} are missing")
            await asyncio.to_thread(
                formats.convert, source, fmt, target, job.columns or ()
            )
        return target

    # -- bulk downloads ------------------------------------------------------

    async def bulk(self, user: User, guids: Any, fmt: Any) -> dict[str, Any]:
        """Start assembling one ZIP of the user's finished jobs.

        Raises:
            Invalid: no guids, too many, or not a list of strings.
            UnknownFormat: ``fmt`` is not a supported format.
            NotFound / Forbidden / NotFinished: a job is missing, someone
                else's, or unfinished; nothing is started.
        """
        fmt = _check_format(fmt if fmt is not None else "xlsx")
        if (
            not isinstance(guids, list)
            or not guids
            or not all(isinstance(g, str) for g in guids)
        ):
            raise Invalid("guids must be a non-empty list of job guids")
        if len(guids) > MAX_BULK_JOBS:
            raise Invalid(f"at most {MAX_BULK_JOBS} jobs in one bulk download")
        chosen: list[Job] = []
        for guid in dict.fromkeys(guids):
            job = await jobs.get(self.db, guid)
            if job is None:
                raise NotFound(f"no job {guid}")
            if job.user_id != user.id:
                raise Forbidden(f"job {guid} belongs to another user")
            if job.status is not Status.DONE:
                raise NotFinished(f"job {guid} is {job.status.value}, not finished")
            chosen.append(job)
        bulk_guid = str(uuid.uuid4())
        async with self.db.engine.begin() as conn:
            await conn.execute(
                bulk_downloads.insert().values(
                    guid=bulk_guid,
                    user_id=user.id,
                    status=Status.QUEUEING.value,
                    format=fmt,
                    jobs=[j.guid for j in chosen],
                    created_at=utcnow(),
                )
            )
        self._spawn(self._assemble(user, bulk_guid, chosen, fmt))
        return {
            "guid": bulk_guid,
            "status": Status.QUEUEING.value,
            "format": fmt,
            "jobs": [j.guid for j in chosen],
        }

    async def _assemble(
        self, user: User, guid: str, chosen: list[Job], fmt: str
    ) -> None:
        directory = self.bulk_dir / guid
        name = BULK_NAME.format(guid=guid)
        try:
            members = []
            for job in chosen:
                path = await self.ensure(job, fmt)
                members.append((path.name, path))
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
            size = await asyncio.to_thread(formats.write_zip, members, directory / name)
        except Exception as exc:
            shutil.rmtree(directory, ignore_errors=True)
            reason = _reason(exc)
            logger.warning("bulk download %s failed: %s", guid, reason)
            await self._finish_bulk(guid, Status.ERROR, error=reason)
            await self.events.bulk(
                user,
                Event.BULK_FAILED,
                guid,
                None,
                {"format": fmt, "jobs": [j.guid for j in chosen], "error": reason},
            )
            return
        token = secrets.token_urlsafe(24)
        await self._finish_bulk(guid, Status.DONE, token=token, size=size)
        url = f"{self.settings.public_url}/download/{token}/{name}"
        logger.info(
            "bulk download %s ready: %d files, %d bytes", guid, len(members), size
        )
        await self.events.bulk(
            user,
            Event.BULK_READY,
            guid,
            url,
            {
                "format": fmt,
                "download_link": url,
                "size": size,
                "files": [
                    {"guid": job.guid, "name": path.name, "url": job.url}
                    for job, (_, path) in zip(chosen, members, strict=True)
                ],
            },
        )

    async def _finish_bulk(
        self,
        guid: str,
        status: Status,
        *,
        token: str | None = None,
        size: int | None = None,
        error: str | None = None,
    ) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(bulk_downloads)
                .where(bulk_downloads.c.guid == guid)
                .values(
                    status=status.value,
                    files_token=token,
                    size=size,
                    error=error,
                    finished_at=utcnow(),
                )
            )

    async def bulk_file(self, token: str, name: str) -> Path | None:
        """The ZIP behind a bulk download link, if it is complete."""
        async with self.db.engine.connect() as conn:
            row: Row[Any] | None = (
                await conn.execute(
                    select(bulk_downloads).where(bulk_downloads.c.files_token == token)
                )
            ).first()
        if row is None or row.status != Status.DONE.value:
            return None
        if name != BULK_NAME.format(guid=row.guid):
            return None
        path = self.bulk_dir / row.guid / name
        return path if path.is_file() else None

    # -- tasks -------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"could not write the file: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__
