"""The dispatcher: sends stored webhook deliveries, retries and reports them.

Job events reach it through :meth:`Dispatcher.sink`, which only stores a
delivery per interested endpoint and wakes the loop; nothing on the job's
path waits for an endpoint. The loop claims due deliveries with a lease and
sends each in its own task, at most ``concurrency`` at once per endpoint and
``MAX_IN_FLIGHT`` in all, so a slow or dead endpoint holds up only its own
deliveries. Every attempt is recorded and reported (``webhook.event.created``
on the owner's ``webhooks:{uuid}`` channel). Several processes may run a
dispatcher on one database; leases keep them from sending one attempt twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx

from exporthub.config import WebhookSettings
from exporthub.store import Database, utcnow
from exporthub.webhooks import sender, store
from exporthub.webhooks.constants import (
    CLAIM_BATCH,
    DELIVERY_RETENTION,
    INTERRUPTED,
    JITTER,
    LEASE_MARGIN,
    MAX_IN_FLIGHT,
    MAX_RETRY_DELAY,
    POLL_INTERVAL,
    PRUNE_INTERVAL,
    DeliveryStatus,
)

logger = logging.getLogger(__name__)

OWNER_HOST_CHARS = 40
STOP_GRACE = 5.0
"""Seconds :meth:`Dispatcher.stop` lets attempts on the wire finish."""

Report = Callable[..., Awaitable[None]]
"""Publishes one attempt: called with keyword arguments ``user_uuid``,
``job_guid``, ``status`` (the delivery's, after the attempt), ``url`` (the
endpoint) and ``details`` (the attempt's fields)."""


def retry_delay(attempt: int, base: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based):
    ``base`` doubled per attempt, capped, stretched by up to ``JITTER``."""
    delay = min(MAX_RETRY_DELAY, base * 2 ** (attempt - 1))
    return delay * (1 + random.random() * JITTER)


class Dispatcher:
    """Delivers webhook deliveries from the shared database.

    Args:
        db: the database holding endpoints and deliveries.
        settings: attempts, delays, timeout, per-endpoint concurrency and
            the networks endpoints may be in.
        report: publishes each attempt to the endpoint owner's channel.
    """

    def __init__(self, db: Database, settings: WebhookSettings, report: Report) -> None:
        self.db = db
        self.settings = settings
        self.report = report
        host = socket.gethostname()[:OWNER_HOST_CHARS]
        self.owner = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._watch = db.watch()
        self._stopping = False
        self._tasks: dict[asyncio.Task[None], int] = {}
        self._busy: Counter[int] = Counter()
        self.attempts: Counter[str] = Counter()
        """Attempts made by this process, by outcome, for metrics."""
        self._client: httpx.AsyncClient | None = None
        self._last_prune = 0.0

    @property
    def lease(self) -> float:
        return self.settings.timeout + LEASE_MARGIN

    def wake(self) -> None:
        """A delivery was stored or freed: look at the table now."""
        self._wake.set()

    async def sink(self, user_uuid: str, envelope: dict[str, Any]) -> None:
        """A job event sink: store a delivery per endpoint that wants it."""
        # Limitation: An event is lost if its process dies after the job
        # changed and before the delivery rows were written: the two are not
        # one transaction.
        try:
            stored = await store.enqueue(self.db, user_uuid, envelope)
        except Exception:
            logger.exception(
                "could not store webhook deliveries of %s", envelope.get("event")
            )
            return
        if stored:
            self.wake()

    async def run(self) -> None:
        """Claim and send deliveries until :meth:`stop`."""
        self._client = sender.new_client()
        logger.info("webhook dispatcher %s started", self.owner)
        try:
            while not self._stopping:
                self._wake.clear()
                due_in: float | None = POLL_INTERVAL
                try:
                    self._watch.mark()
                    await self._claim_due()
                    await self._prune()
                    due_in = await self._until_next_due()
                except Exception:
                    self._watch.forget()  # look again next time
                    logger.exception("webhook dispatcher could not read deliveries")
                if not self._stopping:
                    await self._watch.rest(
                        self._wake, poll=POLL_INTERVAL, due_in=due_in
                    )
        finally:
            # Closing the client cuts its connections: the attempts on them
            # end first (stop() gives them their grace, then cancels them).
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            await self._client.aclose()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop claiming; let attempts on the wire finish for ``grace``
        seconds, then cut them off and record them as interrupted."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        logger.info("webhook dispatcher %s stopped", self.owner)

    async def _until_next_due(self) -> float | None:
        """Seconds until the next retry is due; None when none waits."""
        upcoming = await store.next_due(self.db, utcnow())
        if upcoming is None:
            return None
        return max(0.0, (upcoming - utcnow()).total_seconds())

    async def _claim_due(self) -> None:
        room = MAX_IN_FLIGHT - len(self._tasks)
        if room <= 0 or self._stopping:
            return
        busy = [
            webhook_id
            for webhook_id, count in self._busy.items()
            if count >= self.settings.concurrency
        ]
        found = await store.due(
            self.db, utcnow(), skip_webhooks=busy, limit=min(room, CLAIM_BATCH)
        )
        for seen in found:
            if len(self._tasks) >= MAX_IN_FLIGHT or self._stopping:
                return
            if self._busy[seen.webhook_id] >= self.settings.concurrency:
                continue
            claim = await store.claim(
                self.db,
                seen,
                self.owner,
                lease=self.lease,
                max_attempts=self.settings.max_attempts,
            )
            if claim is None:
                continue
            if claim.interrupted is not None:
                logger.warning(
                    "webhook delivery %s: attempt %d was interrupted by a stop",
                    claim.delivery.guid,
                    claim.interrupted.attempt,
                )
                status = DeliveryStatus.PENDING if claim.send else DeliveryStatus.FAILED
                await self._report(claim, claim.interrupted, status)
            if claim.send:
                self._start(claim)

    def _start(self, claim: store.Claim) -> None:
        webhook_id = claim.delivery.webhook_id
        self._busy[webhook_id] += 1
        task = asyncio.ensure_future(self._deliver(claim))
        self._tasks[task] = webhook_id
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        webhook_id = self._tasks.pop(task)
        self._busy[webhook_id] -= 1
        if self._busy[webhook_id] <= 0:
            del self._busy[webhook_id]
        # The endpoint has room again, and the job's next event may be due.
        self._wake.set()

    async def _deliver(self, claim: store.Claim) -> None:
        delivery = claim.delivery
        message = sender.Message(
            url=claim.url,
            secret=claim.secret,
            body=delivery.payload.encode(),
            delivery=delivery.guid,
            event=delivery.event,
            attempt=delivery.attempts,
        )
        assert self._client is not None
        try:
            outcome = await sender.attempt(self._client, message, self.settings)
        except asyncio.CancelledError:
            outcome = sender.Outcome(None, INTERRUPTED, None)
        self.attempts[_outcome_name(outcome)] += 1
        retry_in = None
        if not outcome.success and delivery.attempts < self.settings.max_attempts:
            retry_in = retry_delay(delivery.attempts, self.settings.retry_delay)
        try:
            now = await store.record(
                self.db, claim, self.owner, outcome, retry_in=retry_in
            )
        except Exception:
            logger.exception("could not record webhook delivery %s", delivery.guid)
            return
        if now is None:
            logger.info(
                "webhook delivery %s attempt %d not recorded: its endpoint was "
                "deleted, or its claim lapsed and another process took it",
                delivery.guid,
                delivery.attempts,
            )
            return
        if now.status is DeliveryStatus.FAILED:
            logger.warning(
                "webhook delivery %s of %s to %s given up after %d attempts: %s",
                delivery.guid,
                delivery.event,
                claim.url,
                delivery.attempts,
                outcome.error,
            )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "webhook delivery %s attempt %d: %s",
                delivery.guid,
                delivery.attempts,
                outcome.status_code or outcome.error,
            )
        attempt = store.Attempt(
            attempt=delivery.attempts,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            success=outcome.success,
            retry_in=retry_in,
            response=outcome.response,
            attempted_at=claim.claimed_at,
        )
        await self._report(claim, attempt, now.status)

    async def _report(
        self, claim: store.Claim, attempt: store.Attempt, status: DeliveryStatus
    ) -> None:
        delivery = claim.delivery
        try:
            await self.report(
                user_uuid=claim.user_uuid,
                job_guid=delivery.job_guid or None,
                status=status.value,
                url=claim.url,
                details={
                    "delivery_id": delivery.guid,
                    "webhook_id": delivery.webhook_id,
                    "url": claim.url,
                    "event": delivery.event,
                    "attempt": attempt.attempt,
                    "status_code": attempt.status_code,
                    "error": attempt.error,
                    "duration_ms": attempt.duration_ms,
                    "success": attempt.success,
                },
            )
        except Exception:
            logger.exception("could not report webhook delivery %s", delivery.guid)

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_INTERVAL:
            return
        self._last_prune = now
        removed = await store.prune(
            self.db, utcnow() - timedelta(seconds=DELIVERY_RETENTION)
        )
        if removed:
            logger.info("removed %d webhook deliveries past retention", removed)


def _outcome_name(outcome: sender.Outcome) -> str:
    """``success``, ``http_error`` (a non-2xx answer), ``interrupted`` or
    ``error`` (no answer: refused, timed out, unreachable)."""
    if outcome.success:
        return "success"
    if outcome.error == INTERRUPTED:
        return "interrupted"
    if outcome.status_code is not None:
        return "http_error"
    return "error"
