"""A client of a running exporthub server: its HTTP API, its channels, and
following one export to its end, live or by polling.

The command line is built on it; it prints nothing itself. Errors carry a
sentence saying what went wrong and one saying what to do about it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    UnauthorizedError,
)

from exporthub.exports.constants import FINAL, Event, Status

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "EXPORTHUB_SERVER"
USER_KEY_ENV = "EXPORTHUB_USER_KEY"
"""The user's API key; ``EXPORTHUB_API_KEY`` is the server API's key."""
API_KEY_HEADER = "X-AUTH-TOKEN"
SOCKET_PATH = "/connection/websocket"

HTTP_TIMEOUT = 30.0
WS_CONNECT_TIMEOUT = 5.0
"""How long the WebSocket may take to connect before polling takes over."""
WS_MAX_RECONNECT_DELAY = 5.0
POLL_INTERVAL = 2.0
CONVERT_POLL_LIMIT = 600.0
"""Without the WebSocket, how long to wait for a conversion's file."""
DOWNLOAD_CHUNK = 64 * 1024

FORMATS = ("xlsx", "csv", "json")
"""What ``export --format`` offers; csv is converted on the server."""
DIRECT_LINKS = {"xlsx": "download_link", "json": "json_url"}
FINAL_STATUSES = frozenset(status.value for status in FINAL)
EXPORTS_NAMESPACE = "exports"


class ClientError(Exception):
    """A request that did not work: ``message`` says why, ``hint`` what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}"


class Unauthorized(ClientError):
    """The server rejected the API key (or none was given)."""


class Refused(ClientError):
    """The server understood the request and refused it (a 4xx answer)."""

    def __init__(self, status: int, code: str, message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code


class Unreachable(ClientError):
    """The server could not be reached, or failed (a 5xx answer)."""


class TimedOut(ClientError):
    """The wait the caller allowed is over; the job goes on on the server."""


class JobFailed(Exception):
    """The job (or its conversion) ended without a file."""

    def __init__(
        self, guid: str, status: str, reason: str, stage: str = "export"
    ) -> None:
        super().__init__(reason)
        self.guid = guid
        self.status = status
        self.reason = reason
        self.stage = stage


def websocket_url(server: str) -> str:
    """``http://host:port/prefix`` -> ``ws://host:port/prefix/connection/websocket``."""
    parts = urlsplit(server)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + SOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class ExportHubClient:
    """The HTTP API of one server, for one user.

    Args:
        server: base address, such as ``http://127.0.0.1:8000``.
        api_key: the user's API key.
        timeout: seconds per HTTP request.

    Use it as an async context manager.
    """

    def __init__(self, server: str, api_key: str, timeout: float = HTTP_TIMEOUT):
        self.server = server.rstrip("/")
        self.api_key = api_key
        self._http = httpx.AsyncClient(
            base_url=self.server,
            headers={API_KEY_HEADER: api_key},
            timeout=timeout,
        )

    async def __aenter__(self) -> ExportHubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    @property
    def ws_url(self) -> str:
        return websocket_url(self.server)

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; the JSON answer, or a :class:`ClientError`."""
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(response)

    def _unreachable(self, exc: Exception) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        return Unreachable(
            f"cannot reach the server at {self.server} ({reason})",
            f"check that it runs (exporthub serve) and pass its address with "
            f"--server or {SERVER_ENV}",
        )

    def _answer(self, response: httpx.Response) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            return data
        error = data if isinstance(data, dict) else {}
        message = str(error.get("error") or response.reason_phrase)
        code = str(error.get("error_code") or response.status_code)
        status = response.status_code
        if status == 401:
            raise Unauthorized(
                f"the server rejected the API key ({message})",
                f"pass a valid key with --api-key or {USER_KEY_ENV}; create "
                "one on the server with: exporthub user create EMAIL",
            )
        if status >= 500:
            raise Unreachable(
                f"the server failed with HTTP {status} ({message})",
                "try again later; the server's log says more",
            )
        raise Refused(status, code, message, _hint_for(code))

    async def socket_token(self) -> str:
        """A connection token for the user's personal channels."""
        answer = await self.request("POST", "/api/public/auth/socket")
        return str(answer["token"])

    async def create_job(
        self, url: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url}
        if options:
            body["options"] = options
        job: dict[str, Any] = await self.request("POST", "/api/v3/job", body)
        return job

    async def get_job(self, guid: str) -> dict[str, Any]:
        job: dict[str, Any] = await self.request("GET", f"/api/v3/job/{guid}")
        return job

    async def list_jobs(self, page: int = 1, per_page: int = 20) -> dict[str, Any]:
        listing: dict[str, Any] = await self.request(
            "GET", f"/api/v3/jobs?page={page}&per_page={per_page}"
        )
        return listing

    async def convert(self, guid: str, fmt: str) -> None:
        await self.request("POST", f"/api/v3/job/{guid}/convert", {"format": fmt})

    async def file_exists(self, url: str) -> bool:
        """Whether a download link serves a file yet (404 until it does)."""
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code == 404:
                    return False
                if not response.is_success:
                    await response.aread()
                    self._answer(response)
                return True
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    async def download(self, url: str, dest: Path) -> int:
        """Save the file at ``url`` to ``dest`` (whole or not at all); its size."""
        partial = dest.with_name(f".{dest.name}.part")
        size = 0
        try:
            async with self._http.stream("GET", url) as response:
                if not response.is_success:
                    await response.aread()
                    self._answer(response)
                with partial.open("wb") as handle:
                    async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                        handle.write(chunk)
                        size += len(chunk)
            os.replace(partial, dest)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        finally:
            partial.unlink(missing_ok=True)
        return size


def _hint_for(code: str) -> str:
    hints = {
        "unsupported_url": "pass the address of a post or video on one of those",
        "invalid_option": "fix the option and run the command again",
        "platform_not_configured": "ask the server's operator to set that key",
        "usage_limit_reached": "ask the operator for a larger plan",
        "not_found": "list your jobs with: exporthub jobs",
    }
    return hints.get(code, "check the command and run it again")


# -- channels ---------------------------------------------------------------


@dataclass
class Publication:
    """One message that arrived on one of the user's channels."""

    channel: str
    data: Any

    @property
    def namespace(self) -> str:
        return self.channel.partition(":")[0]


@dataclass
class _Connection:
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    # Resolves once: None when subscribed, else why the first connect failed.
    opened: asyncio.Future[str | None] | None = None
    ever_connected: bool = False
    reconnects: int = 0
    closing: bool = False


class Channels(ClientEventHandler):
    """The user's channels over the WebSocket: publications in a queue, and
    when the connection is lost or back.

    ``on_change`` is called with ``"lost"`` or ``"back"`` (after a reconnect)
    and the reason, so a caller can say so and catch up.
    """

    def __init__(
        self,
        api: ExportHubClient,
        on_change: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        self.queue: asyncio.Queue[Publication] = asyncio.Queue()
        self.channels: list[str] = []
        self._on_change = on_change
        self._state = _Connection()
        self.client: Client | None = None

    async def _get_token(self) -> str:
        try:
            return await self.api.socket_token()
        except Unauthorized as exc:
            # Stops the reconnect loop: a rejected key will not get better.
            raise UnauthorizedError(str(exc)) from exc

    async def open(self, token: str, within: float = WS_CONNECT_TIMEOUT) -> None:
        """Connect and wait for the server-side subscriptions.

        Raises:
            Unreachable: the WebSocket did not connect ``within`` seconds, or
                failed to (a proxy that refuses WebSocket upgrades, say).
        """
        opened: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._state.opened = opened
        self.client = Client(
            self.api.ws_url,
            events=self,
            token=token,
            get_token=self._get_token,
            timeout=within,
            max_reconnect_delay=WS_MAX_RECONNECT_DELAY,
        )
        await self.client.connect()
        try:
            # asyncio.timeout, unlike wait_for on 3.11, never swallows a
            # cancellation (Ctrl-C) that lands as the wait ends.
            async with asyncio.timeout(within):
                failure = await asyncio.shield(opened)
        except TimeoutError:
            failure = f"no answer within {within:g} s"
        if failure is not None:
            await self.close()
            raise Unreachable(
                f"cannot open the WebSocket at {self.api.ws_url} ({failure})",
                "check that the server runs and that any proxy in between "
                "passes WebSocket upgrades",
            )

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            self._state.closing = True
            await client.disconnect()

    @property
    def reconnects(self) -> int:
        """How often the connection came back after being lost."""
        return self._state.reconnects

    async def next(self, within: float | None = None) -> Publication | None:
        """The next publication, or None when ``within`` seconds pass first."""
        try:
            async with asyncio.timeout(within):
                return await self.queue.get()
        except TimeoutError:
            return None

    # centrifuge-python's events

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        if self._state.ever_connected and self._state.connected.is_set():
            self._state.connected.clear()
            await self._changed("lost", ctx.reason)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self._state.connected.set()
        if self._state.ever_connected:
            self._state.reconnects += 1
            await self._changed("back", "reconnected")
        self._state.ever_connected = True

    async def on_error(self, ctx: ErrorContext) -> None:
        self._opened(str(ctx.error) or type(ctx.error).__name__)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self._opened(f"disconnected: {ctx.reason} ({ctx.code})")
        if self._state.ever_connected and self._state.connected.is_set():
            self._state.connected.clear()
            await self._changed("lost", f"{ctx.reason} ({ctx.code})")

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        if ctx.channel not in self.channels:
            self.channels.append(ctx.channel)
        if ctx.channel.partition(":")[0] == EXPORTS_NAMESPACE:
            self._opened(None)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.queue.put_nowait(Publication(ctx.channel, ctx.pub.data))

    def _opened(self, failure: str | None) -> None:
        opened = self._state.opened
        if opened is not None and not opened.done():
            opened.set_result(failure)

    async def _changed(self, what: str, reason: str) -> None:
        if self._on_change is not None and not self._state.closing:
            await self._on_change(what, reason)


@asynccontextmanager
async def open_channels(
    api: ExportHubClient,
    token: str,
    on_change: Callable[[str, str], Awaitable[None]] | None = None,
    within: float = WS_CONNECT_TIMEOUT,
) -> AsyncIterator[Channels]:
    """The user's channels, connected; disconnected on leaving."""
    channels = Channels(api, on_change)
    await channels.open(token, within)
    try:
        yield channels
    finally:
        await channels.close()


# -- following one export -----------------------------------------------------


class Progress:
    """What following a job reports as it goes; the command line draws it."""

    def created(self, job: dict[str, Any]) -> None:
        """The job was queued."""

    def update(self, exported: int, total: int | None) -> None:
        """``exported`` of ``total`` comments (total unknown: None)."""

    def note(self, text: str) -> None:
        """Something worth a line: a retry, a fallback, a lost connection."""

    def done(self) -> None:
        """Following has ended, well or not."""


@dataclass
class ExportResult:
    """A finished export saved to a file."""

    guid: str
    path: Path
    size: int
    comments: int
    live: bool


@dataclass
class _Outcome:
    status: str
    exported: int
    links: dict[str, str | None]
    error: str | None


def _outcome_of_job(job: dict[str, Any]) -> _Outcome:
    return _Outcome(
        status=job["status"],
        exported=int(job.get("total_exported") or 0),
        links={fmt: job.get(key) for fmt, key in DIRECT_LINKS.items()},
        error=job.get("error"),
    )


def _deadline_left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimedOut(
            "gave up waiting (--timeout)",
            "the export goes on on the server; see it with: exporthub jobs",
        )
    return left


class JobFollower:
    """Creates one export and follows it to a file.

    Live over the user's channels when the WebSocket connects; otherwise
    by polling the REST API every :data:`POLL_INTERVAL` seconds.
    """

    def __init__(
        self,
        api: ExportHubClient,
        progress: Progress,
        *,
        poll_interval: float = POLL_INTERVAL,
        ws_timeout: float = WS_CONNECT_TIMEOUT,
    ) -> None:
        self.api = api
        self.progress = progress
        self.poll_interval = poll_interval
        self.ws_timeout = ws_timeout

    async def export(
        self,
        url: str,
        fmt: str,
        out: Path | None,
        options: dict[str, Any] | None = None,
        give_up_after: float | None = None,
    ) -> ExportResult:
        """Create the job, follow it, download the file in ``fmt``.

        Raises:
            ClientError: the request was refused or the server unreachable.
            JobFailed: the job or its conversion failed.
        """
        deadline = time.monotonic() + give_up_after if give_up_after else None
        token = await self.api.socket_token()  # also checks the key and server
        channels = Channels(self.api, self._connection_changed)
        try:
            await channels.open(token, self.ws_timeout)
        except Unreachable as exc:
            self.progress.note(
                f"{exc.message}; following the job by polling every "
                f"{self.poll_interval:g} s instead"
            )
            live = None
        else:
            live = channels
        try:
            job = await self.api.create_job(url, options)
            self.progress.created(job)
            if live is not None:
                outcome = await self._follow_live(live, job, deadline)
            else:
                outcome = await self._follow_polling(job, deadline)
            if outcome.status != Status.DONE:
                reason = outcome.error or f"the job was {outcome.status}"
                raise JobFailed(job["guid"], outcome.status, reason)
            link = outcome.links.get(fmt)
            if link is None:
                await self.api.convert(job["guid"], fmt)
                if live is not None:
                    link = await self._converted_live(live, outcome, job, fmt, deadline)
                else:
                    link = await self._converted_polling(outcome, fmt, deadline)
        finally:
            self.progress.done()
            if live is not None:
                await live.close()
        name = urlsplit(link).path.rsplit("/", 1)[-1]
        target = out or Path(name)
        if target.is_dir():
            target = target / name
        size = await self.api.download(link, target)
        return ExportResult(
            job["guid"], target, size, outcome.exported, live is not None
        )

    async def _connection_changed(self, what: str, reason: str) -> None:
        if what == "lost":
            self.progress.note(f"connection lost ({reason}); reconnecting")
        else:
            self.progress.note("reconnected")

    async def _follow_live(
        self, channels: Channels, job: dict[str, Any], deadline: float | None
    ) -> _Outcome:
        guid = job["guid"]
        seen = channels.reconnects
        while True:
            if channels.reconnects != seen:
                # Events published while the connection was down may be
                # lost: after a reconnect the job's state is read once.
                seen = channels.reconnects
                current = await self.api.get_job(guid)
                if current["status"] in FINAL_STATUSES:
                    return _outcome_of_job(current)
            # The wait is bounded only to notice a reconnect or the deadline.
            message = await channels.next(self._wait_step(deadline, self.poll_interval))
            if message is None:
                continue
            envelope = message.data
            if (
                message.namespace != EXPORTS_NAMESPACE
                or not isinstance(envelope, dict)
                or envelope.get("guid") != guid
            ):
                continue
            event = envelope.get("event")
            details = envelope.get("details") or {}
            if event == Event.PROGRESS:
                self.progress.update(
                    int(envelope.get("current") or 0), envelope.get("total")
                )
            elif event == Event.REQUEUED:
                self.progress.note(
                    f"retrying: {details.get('reason')} "
                    f"(attempt {details.get('attempts')})"
                )
            elif event in (Event.FINISHED, Event.FAILED):
                exported = int(details.get("totalExported") or 0)
                if event == Event.FINISHED:
                    self.progress.update(exported, details.get("total"))
                return _Outcome(
                    status=str(envelope.get("status")),
                    exported=exported,
                    links={fmt: details.get(key) for fmt, key in DIRECT_LINKS.items()},
                    error=details.get("error"),
                )

    async def _follow_polling(
        self, job: dict[str, Any], deadline: float | None
    ) -> _Outcome:
        while True:
            current = await self.api.get_job(job["guid"])
            self.progress.update(
                int(current.get("total_exported") or 0), current.get("total")
            )
            if current["status"] in FINAL_STATUSES:
                return _outcome_of_job(current)
            await asyncio.sleep(self._wait_step(deadline, self.poll_interval) or 0)

    async def _converted_live(
        self,
        channels: Channels,
        outcome: _Outcome,
        job: dict[str, Any],
        fmt: str,
        deadline: float | None,
    ) -> str:
        self.progress.note(f"converting to {fmt} on the server")
        guid = job["guid"]
        seen = channels.reconnects
        while True:
            if channels.reconnects != seen:
                seen = channels.reconnects
                link = _sibling_link(outcome, fmt)
                if await self.api.file_exists(link):
                    return link
            message = await channels.next(self._wait_step(deadline, self.poll_interval))
            if message is None or message.namespace != EXPORTS_NAMESPACE:
                continue
            envelope = message.data
            if not isinstance(envelope, dict) or envelope.get("guid") != guid:
                continue
            details = envelope.get("details") or {}
            if details.get("format") != fmt:
                continue
            if envelope.get("event") == Event.CONVERT_DONE:
                return str(details["download_link"])
            if envelope.get("event") == Event.CONVERT_FAILED:
                raise JobFailed(
                    guid, Status.ERROR, str(details.get("error")), "conversion"
                )

    async def _converted_polling(
        self, outcome: _Outcome, fmt: str, deadline: float | None
    ) -> str:
        # Limitation: without the WebSocket a failed conversion is noticed
        # only when polling gives up, as the REST API does not report
        # conversions.
        self.progress.note(f"converting to {fmt} on the server")
        link = _sibling_link(outcome, fmt)
        limit = time.monotonic() + CONVERT_POLL_LIMIT
        if deadline is not None:
            limit = min(limit, deadline)
        while not await self.api.file_exists(link):
            if time.monotonic() >= limit:
                raise TimedOut(
                    f"the server did not convert the export to {fmt} in time",
                    "run the command again later, or pick --format xlsx or json",
                )
            await asyncio.sleep(self.poll_interval)
        return link

    @staticmethod
    def _wait_step(deadline: float | None, step: float) -> float:
        left = _deadline_left(deadline)
        return step if left is None else min(step, left)


def _sibling_link(outcome: _Outcome, fmt: str) -> str:
    """The link a conversion to ``fmt`` gets: the XLSX link, other suffix."""
    xlsx = outcome.links["xlsx"]
    assert xlsx is not None, "a finished job has an XLSX link"
    return xlsx.rsplit(".", 1)[0] + f".{fmt}"
