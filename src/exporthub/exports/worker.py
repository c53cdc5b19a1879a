"""The worker: claims queued jobs and runs them to an end.

A running job holds a lease that its heartbeat renews; a worker that dies
stops renewing it, and any worker's reaper then requeues the job. Progress
is counted in memory per comment and published by the heartbeat, at most
once per progress interval, so the per-comment path stays cheap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from exporthub import formats
from exporthub.accounts import User, get_user_by_id
from exporthub.config import Settings
from exporthub.exports import jobs
from exporthub.exports.constants import Status
from exporthub.exports.events import JobEvents
from exporthub.exports.jobs import Job
from exporthub.exports.views import file_name
from exporthub.sources import (
    Adapter,
    ExportOptions,
    OptionError,
    SourceError,
    TransientSourceError,
    detect,
)
from exporthub.store import Database, utcnow

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("xlsx", "json", "ndjson")
"""Written by every job; other formats come from conversion."""
PARTIAL_SUFFIX = ".part"
USER_AGENT = "exporthub/0.1 (+self-hosted comment exporter)"
MAX_RETRY_AFTER = 3600.0
"""Longest wait a platform's Retry-After can impose before the next try."""
IDLE_POLL = 1.0
"""Seconds between queue checks when nothing wakes the worker; other
processes may queue jobs in a shared database."""


@dataclass
class _Run:
    """A job being run by this worker."""

    job: Job
    user: User
    exported: int = 0
    total: int | None = None
    published: int = -1
    task: asyncio.Task[None] | None = None
    stopped: bool = False
    finishing: bool = False
    """Set once the files are complete: the run is past being abandoned."""
    started: float = field(default_factory=time.monotonic)
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Names this run's partial files: a worker that lost the job (its
    lease expired while it was alive) must not touch the next run's."""

    def partial(self, directory: Path, fmt: str) -> Path:
        return directory / f"{fmt}.{self.token}{PARTIAL_SUFFIX}"


class Worker:
    """Runs jobs from the queue, ``settings.worker_concurrency`` at a time.

    Args:
        db: the shared database.
        settings: intervals, limits, data directory, source APIs.
        events: publishes job events.
    """

    def __init__(self, db: Database, settings: Settings, events: JobEvents) -> None:
        self.db = db
        self.settings = settings
        self.events = events
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._watch = db.watch()
        self._runs: dict[str, _Run] = {}
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._stopping = False
        self._http: httpx.AsyncClient | None = None
        self._beating: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def files_dir(self) -> Path:
        return self.settings.data_dir / "files"

    def wake(self) -> None:
        """A job was queued: look at the queue now."""
        self._wake.set()

    def cancel(self, guid: str) -> None:
        """Abandon ``guid`` now if this worker runs it (its user stopped it)."""
        run = self._runs.get(guid)
        if run is not None and run.task is not None and not run.finishing:
            run.stopped = True
            run.task.cancel()

    async def run(self) -> None:
        """Claim and run jobs until :meth:`stop`."""
        self._http = httpx.AsyncClient(
            timeout=self.settings.source_timeout,
            # Adapters follow redirects themselves, only within the platform.
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=32),
        )
        self._beating = asyncio.ensure_future(self._heartbeat())
        logger.info("worker %s started", self.worker_id)
        while not self._stopping:
            await self._slots.acquire()
            if self._stopping:  # Stopped while every slot was busy.
                self._slots.release()
                break
            job = None
            try:
                self._watch.mark()
                job = await jobs.claim(self.db, self.worker_id, self.settings.job_lease)
            finally:
                if job is None:
                    self._slots.release()
            if job is None:
                await self._idle()
                continue
            user = await get_user_by_id(self.db, job.user_id)
            if user is None:  # Deleted meanwhile: nobody to export for.
                self._slots.release()
                continue
            self._start(job, user)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give running jobs ``grace`` seconds, then requeue
        what is left so another worker finishes it.

        The HTTP client and the heartbeat stay up until then: running jobs
        keep fetching and keep their leases while they finish.
        """
        self._stopping = True
        self._wake.set()
        running = [r.task for r in self._runs.values() if r.task is not None]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for run in list(self._runs.values()):
                if run.task in pending:
                    await self._hand_back(run)
        if self._beating is not None:
            self._beating.cancel()
        if self._http is not None:
            await self._http.aclose()

    async def _hand_back(self, run: _Run) -> None:
        """Requeue a job this worker will not finish. The interrupted
        attempt is not counted against the job's attempts."""
        run.stopped = True
        if run.task is not None:
            run.task.cancel()
        requeued = await jobs.requeue(
            self.db,
            run.job.guid,
            allowed={Status.PROGRESS},
            run_after=None,
            error=None,
            worker_id=self.worker_id,
            release_attempt=True,
        )
        if requeued is not None:
            logger.info("job %s requeued: worker shutting down", run.job.guid)
            await self.events.requeued(requeued, run.user, "worker shutting down")

    async def _idle(self) -> None:
        """Wait until woken, until a queued job's backoff ends, or until
        another process may have queued one (the database changed)."""
        upcoming = await jobs.next_run_at(self.db)
        due_in = None if upcoming is None else (upcoming - utcnow()).total_seconds()
        await self._watch.rest(self._wake, poll=IDLE_POLL, due_in=due_in)
        self._wake.clear()

    def _start(self, job: Job, user: User) -> None:
        run = _Run(job=job, user=user)
        self._runs[job.guid] = run
        run.task = asyncio.ensure_future(self._execute(run))
        run.task.add_done_callback(lambda _t: self._finished(job.guid))

    def _finished(self, guid: str) -> None:
        self._runs.pop(guid, None)
        self._slots.release()
        self._wake.set()

    # -- one job -----------------------------------------------------------

    async def _execute(self, run: _Run) -> None:
        job = run.job
        logger.info("job %s started (attempt %d, %s)", job.guid, job.attempts, job.url)
        directory = self.files_dir / job.guid
        try:
            await self.events.started(job, run.user)
            adapter_cls, ref = detect(job.url)
            options = ExportOptions.parse(job.options)
            adapter = adapter_cls(
                self._http,  # type: ignore[arg-type]
                self.settings.source_apis.get(adapter_cls.key, adapter_cls.default_api),
                self.settings.source_secrets.get(adapter_cls.key),
            )
            columns = list(adapter_cls.extra_columns)
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
            await self._write(run, adapter, ref, options, directory, columns)
        except asyncio.CancelledError:
            _discard(directory, run)
            if not run.stopped:
                raise
            logger.info("job %s abandoned: stopped, or handed back", job.guid)
            return
        except TransientSourceError as exc:
            _discard(directory, run)
            await self._transient(run, exc)
            return
        except SourceError as exc:
            _discard(directory, run)
            await self._fail(run, exc.reason)
            return
        except OptionError as exc:
            _discard(directory, run)
            await self._fail(run, str(exc))
            return
        except Exception:
            logger.exception("job %s crashed", job.guid)
            _discard(directory, run)
            await self._fail(
                run, "internal error while exporting; the job can be retried"
            )
            return

        run.finishing = True
        done = await jobs.finish(
            self.db,
            job.guid,
            self.worker_id,
            exported=run.exported,
            total=run.total,
            columns=columns,
        )
        if done is None:
            # Stopped or taken over while the files were closing.
            _discard(directory, run)
            return
        self._publish_files(done, run, directory)
        logger.info(
            "job %s done: %d comments in %.2fs",
            job.guid,
            run.exported,
            time.monotonic() - run.started,
        )
        await self.events.finished(done, run.user)

    async def _write(
        self,
        run: _Run,
        adapter: Adapter,
        ref: str,
        options: ExportOptions,
        directory: Path,
        columns: list[str],
    ) -> None:
        writers = [
            formats.open_writer(fmt, run.partial(directory, fmt), columns)
            for fmt in OUTPUT_FORMATS
        ]
        try:
            async for comment in adapter.comments(ref, options):
                run.total = adapter.total
                if not options.admits(comment):
                    continue
                record = comment.to_record()
                for writer in writers:
                    writer.write(record)
                run.exported += 1
                if options.limit is not None and run.exported >= options.limit:
                    break
            run.total = adapter.total
            if options.limit is not None and run.total is not None:
                run.total = min(run.total, options.limit)
            # Closing assembles the XLSX: seconds for big exports, off the loop.
            for writer in writers:
                await asyncio.to_thread(writer.close)
        except BaseException:
            for writer in writers:
                writer.abort()
            raise

    def _publish_files(self, job: Job, run: _Run, directory: Path) -> None:
        final = {file_name(job, fmt) for fmt in OUTPUT_FORMATS}
        for fmt in OUTPUT_FORMATS:
            run.partial(directory, fmt).rename(directory / file_name(job, fmt))
        # Anything else was left by runs whose worker died (partial files,
        # the XLSX writer's scratch directories); the job is done now.
        for leftover in directory.iterdir():
            if leftover.name in final:
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    async def _transient(self, run: _Run, exc: TransientSourceError) -> None:
        job = run.job
        if job.attempts >= self.settings.max_attempts:
            await self._fail(
                run, f"{exc.reason} (gave up after {job.attempts} attempts)"
            )
            return
        delay = self.settings.retry_delay * 2 ** (job.attempts - 1)
        delay *= 1 + random.random() * 0.25  # jitter: retries do not align
        if exc.retry_after is not None:
            # A platform may ask for a day; ask it again within the hour.
            delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
        requeued = await jobs.requeue(
            self.db,
            job.guid,
            allowed={Status.PROGRESS},
            run_after=utcnow() + timedelta(seconds=delay),
            error=exc.reason,
            worker_id=self.worker_id,
        )
        if requeued is not None:
            logger.info("job %s requeued in %.1fs: %s", job.guid, delay, exc.reason)
            await self.events.requeued(requeued, run.user, exc.reason)

    async def _fail(self, run: _Run, reason: str) -> None:
        failed = await jobs.fail(
            self.db, run.job.guid, self.worker_id, error=reason, exported=run.exported
        )
        if failed is not None:
            logger.info("job %s failed: %s", run.job.guid, reason)
            await self.events.failed(failed, run.user)

    # -- heartbeat: progress, leases, lost workers ---------------------------

    async def _heartbeat(self) -> None:
        interval = min(self.settings.progress_interval, self.settings.job_lease / 3)
        last_progress = time.monotonic()
        last_reap = 0.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            publish = now - last_progress >= self.settings.progress_interval
            if publish:
                last_progress = now
            for run in list(self._runs.values()):
                try:
                    await self._beat(run, publish)
                except Exception:
                    logger.exception("heartbeat of job %s failed", run.job.guid)
            if now - last_reap >= self.settings.job_lease / 2:
                last_reap = now
                try:
                    await self._reap()
                except Exception:
                    logger.exception("reaping lost jobs failed")

    async def _beat(self, run: _Run, publish: bool) -> None:
        if run.finishing:
            return
        # One reading for the database and every message: comments keep
        # arriving while the update is awaited.
        exported, total = run.exported, run.total
        current = await jobs.progress(
            self.db,
            run.job.guid,
            self.worker_id,
            exported=exported,
            total=total,
            lease=self.settings.job_lease,
        )
        if current is None:
            # Stopped by its user elsewhere, or taken over: let it go.
            if not run.finishing:
                self.cancel(run.job.guid)
            return
        # Nothing exported yet is no progress worth a message.
        if publish and exported and exported != run.published:
            run.published = exported
            await self.events.progress(current, run.user, exported, total)
        await self.events.milestones(current, run.user, exported, total)

    async def _reap(self) -> None:
        for job in await jobs.expired_leases(self.db):
            if job.guid in self._runs:
                continue
            requeued = await jobs.requeue(
                self.db,
                job.guid,
                allowed={Status.PROGRESS},
                run_after=None,
                error="the worker running it stopped responding",
                lease_expired=True,
            )
            user = await get_user_by_id(self.db, job.user_id)
            if requeued is not None and user is not None:
                logger.warning("job %s requeued: its worker was lost", job.guid)
                await self.events.requeued(requeued, user, "worker lost")
                self._wake.set()


def _discard(directory: Path, run: _Run) -> None:
    """Delete this run's partial files, and the directory once empty."""
    for fmt in OUTPUT_FORMATS:
        run.partial(directory, fmt).unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        pass  # Not empty: another run of the job writes there, or wrote.
