"""Test helpers: the embedding example as a real server process, and
centrifuge-python clients that record what the server pushes to them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from centrifuge import (
    Client,
    ClientEventHandler,
    Subscription,
    SubscriptionEventHandler,
)

from exporthub.realtime import issue_token

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "embed_starlette.py"
LOOPBACK = "127.0.0.1"
STARTUP_LIMIT = 30.0
"""Seconds the example may take to start before the fixture gives up."""
STOP_LIMIT = 10.0
EVENT_LIMIT = 10.0
"""Seconds a test waits for a push before failing."""
POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class ExampleServer:
    """A running example process."""

    port: int
    secret: str
    api_key: str | None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/connection/websocket"

    def token(self, user: str, channels: list[str] | None = None) -> str:
        return issue_token(self.secret, user, ttl=3600, channels=channels or [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def run_example(*, secret: str, api_key: str | None) -> Iterator[ExampleServer]:
    """Start ``docs/examples/embed_starlette.py`` on a free loopback port and
    stop it on exit, whatever happens."""
    port = free_port()
    args = [sys.executable, str(EXAMPLE), "--port", str(port), "--secret", secret]
    if api_key is not None:
        args += ["--api-key", api_key]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("EXAMPLE_API_KEY", None)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            server = ExampleServer(port, secret, api_key)
            _wait_ready(process, server, log)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(STOP_LIMIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen, server: ExampleServer, log: Any) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    with httpx.Client(trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"example exited early:\n{output}")
            try:
                if http.get(server.base_url + "/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError("example did not start in time")


class Events(ClientEventHandler, SubscriptionEventHandler):
    """Records every event of a client or a subscription, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.seen: list[tuple[str, Any]] = []

    def _record(self, kind: str, ctx: Any) -> None:
        self.seen.append((kind, ctx))
        self.queue.put_nowait((kind, ctx))

    async def on_connecting(self, ctx: Any) -> None:
        self._record("connecting", ctx)

    async def on_connected(self, ctx: Any) -> None:
        self._record("connected", ctx)

    async def on_disconnected(self, ctx: Any) -> None:
        self._record("disconnected", ctx)

    async def on_error(self, ctx: Any) -> None:
        self._record("error", ctx)

    async def on_subscribing(self, ctx: Any) -> None:
        self._record("subscribing", ctx)

    async def on_subscribed(self, ctx: Any) -> None:
        self._record("subscribed", ctx)

    async def on_unsubscribed(self, ctx: Any) -> None:
        self._record("unsubscribed", ctx)

    async def on_publication(self, ctx: Any) -> None:
        self._record("publication", ctx)

    async def on_join(self, ctx: Any) -> None:
        self._record("join", ctx)

    async def on_leave(self, ctx: Any) -> None:
        self._record("leave", ctx)

    async def next(self, kind: str, where: Callable[[Any], bool] | None = None) -> Any:
        """The context of the next event of ``kind`` (that ``where`` accepts);
        events skipped on the way stay in ``seen``."""
        async with asyncio.timeout(EVENT_LIMIT):
            while True:
                seen_kind, ctx = await self.queue.get()
                if seen_kind == kind and (where is None or where(ctx)):
                    return ctx

    def of(self, kind: str) -> list[Any]:
        return [ctx for seen_kind, ctx in self.seen if seen_kind == kind]


@contextlib.asynccontextmanager
async def connected_client(
    server: ExampleServer, user: str, channels: list[str] | None = None
) -> AsyncIterator[tuple[Client, Events]]:
    """A centrifuge-python client of ``user``, connected with a token that
    subscribes it server-side to ``channels``; disconnected on exit."""
    events = Events()
    client = Client(
        server.ws_url,
        events=events,
        token=server.token(user, channels),
        proxy=None,
        min_reconnect_delay=0.1,
    )
    await client.connect()
    try:
        await client.ready(EVENT_LIMIT)
        yield client, events
    finally:
        await client.disconnect()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Await ``check()`` until it is true: effects the server applies in the
    background (presence after a disconnect) come with no reply to wait for."""
    async with asyncio.timeout(EVENT_LIMIT):
        while True:
            if await check():
                return
            await asyncio.sleep(POLL_INTERVAL)


@contextlib.asynccontextmanager
async def subscribed_client(
    server: ExampleServer, user: str, channel: str, *, join_leave: bool = False
) -> AsyncIterator[tuple[Client, Subscription, Events]]:
    """A client of ``user`` subscribed to ``channel`` from the client side;
    the events are the subscription's."""
    async with connected_client(server, user) as (client, _):
        events = Events()
        subscription = client.new_subscription(
            channel, events=events, join_leave=join_leave
        )
        await subscription.subscribe()
        await subscription.ready(EVENT_LIMIT)
        yield client, subscription, events
