"""Helpers for tests that follow a job across network drops and restarts:
a watcher that also records offsets, reconnects and resubscriptions, and
ways to ask the server what really happened."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from centrifuge import (
    Client,
    ConnectedContext,
    ConnectingContext,
    PublicationContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from watcher import Watcher, token_getter

WAIT = 30.0
RECONNECT_DELAY = 0.05
MAX_RECONNECT_DELAY = 0.5
POLL = 0.1


class Follower(Watcher):
    """Records every publication with its offset, every (re)subscription of
    a server-side channel and every reconnect, with their codes."""

    def __init__(self) -> None:
        super().__init__()
        self.positions: list[tuple[str, int, Any]] = []
        self.subscriptions: list[ServerSubscribedContext] = []
        self.connecting: list[tuple[int, str]] = []
        self.connects = 0

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscriptions.append(ctx)
        await super().on_subscribed(ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.positions.append((ctx.channel, ctx.pub.offset, ctx.pub.data))
        await super().on_publication(ctx)

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.connecting.append((ctx.code, ctx.reason))
        self._changed.set()

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.connects += 1
        self._changed.set()

    def stream(self, channel: str) -> list[tuple[int, Any]]:
        """``(offset, data)`` of every publication received on ``channel``."""
        return [(offset, data) for ch, offset, data in self.positions if ch == channel]

    def events(self, channel: str) -> list[str]:
        return [data["event"] for _, data in self.stream(channel)]

    def subscriptions_of(self, channel: str) -> list[ServerSubscribedContext]:
        return [ctx for ctx in self.subscriptions if ctx.channel == channel]

    def resubscriptions(self, channel: str) -> list[ServerSubscribedContext]:
        return self.subscriptions_of(channel)[1:]


class ChannelFollower(SubscriptionEventHandler):
    """Records a client-side subscription: its (re)subscriptions and every
    publication with its offset, into a :class:`Follower`."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.subscribed: list[SubscribedContext] = []

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)
        self.follower._changed.set()

    async def on_publication(self, ctx: PublicationContext) -> None:
        channel = self.subscribed[-1].channel
        self.follower.positions.append((channel, ctx.pub.offset, ctx.pub.data))
        self.follower.record(channel, ctx.pub.data)


def follow(ws_url: str, base_url: str, api_key: str, follower: Follower) -> Client:
    """A centrifuge-python client that reconnects quickly after a drop."""
    return Client(
        ws_url,
        get_token=token_getter(base_url, api_key),
        events=follower,
        timeout=10.0,
        min_reconnect_delay=RECONNECT_DELAY,
        max_reconnect_delay=MAX_RECONNECT_DELAY,
    )


async def history(
    ws_url: str, base_url: str, api_key: str, channel: str
) -> list[tuple[int, Any]]:
    """Every publication the server keeps for ``channel``, through the
    protocol's history command, by another connection of the same user."""
    client = follow(ws_url, base_url, api_key, Follower())
    await client.connect()
    try:
        result = await client.history(channel, limit=-1)
    finally:
        await client.disconnect()
    return [(p.offset, p.data) for p in result.publications]


async def create_job(base_url: str, api_key: str, url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(
            "/api/v3/job", headers={"X-AUTH-TOKEN": api_key}, json={"url": url}
        )
    assert response.status_code == 201, response.text
    return response.json()


async def wait_for_status(
    base_url: str, api_key: str, guid: str, status: str
) -> dict[str, Any]:
    """Poll the job until it has ``status``; fail with the last state."""
    job: dict[str, Any] = {}

    async def poll() -> None:
        nonlocal job
        async with httpx.AsyncClient(base_url=base_url) as http:
            while True:
                response = await http.get(
                    f"/api/v3/job/{guid}", headers={"X-AUTH-TOKEN": api_key}
                )
                job = response.json()
                if job.get("status") == status:
                    return
                await asyncio.sleep(POLL)

    try:
        await asyncio.wait_for(poll(), WAIT)
    except TimeoutError:
        raise AssertionError(f"job never reached {status}: {job}") from None
    return job


def ws_url(port: int) -> str:
    """The channel server's address on a node listening on ``port``."""
    return f"ws://127.0.0.1:{port}/connection/websocket"


def exported_so_far(follower: Follower, channel: str) -> int:
    """The highest ``current`` a follower has seen in ``channel``'s events."""
    return max((d.get("current") or 0 for _, d in follower.stream(channel)), default=0)
