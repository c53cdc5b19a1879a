"""A watcher: the unmodified centrifuge-python client recording what arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from centrifuge import (
    Client,
    ClientEventHandler,
    PublicationContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    SubscriptionEventHandler,
)

WAIT = 20.0


class Watcher(ClientEventHandler):
    """Records server-side subscriptions and every publication by channel."""

    def __init__(self) -> None:
        self.subscribed: dict[str, ServerSubscribedContext] = {}
        self.messages: list[tuple[str, Any]] = []
        self.disconnects: list[tuple[int, str]] = []
        self._changed = asyncio.Event()

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscribed[ctx.channel] = ctx
        self._changed.set()

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.record(ctx.channel, ctx.pub.data)

    async def on_disconnected(self, ctx: Any) -> None:
        self.disconnects.append((ctx.code, ctx.reason))
        self._changed.set()

    def record(self, channel: str, data: Any) -> None:
        self.messages.append((channel, data))
        self._changed.set()

    def on(self, channel: str) -> list[Any]:
        return [data for ch, data in self.messages if ch == channel]

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = WAIT
    ) -> None:
        """Wait until ``predicate()`` holds; fail with what did arrive."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), within)
        except TimeoutError:
            raise AssertionError(f"timed out; received {self.messages!r}") from None

    def subscription_handler(self, channel: str) -> SubscriptionEventHandler:
        watcher = self

        class Handler(SubscriptionEventHandler):
            async def on_publication(self, ctx: PublicationContext) -> None:
                watcher.record(channel, ctx.pub.data)

        return Handler()


def token_getter(base_url: str, api_key: str, jobs: list[str] | None = None):
    """The ``get_token`` callback a user writes: ask the socket endpoint."""

    async def get_token() -> str:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{base_url}/api/public/auth/socket",
                headers={"X-AUTH-TOKEN": api_key},
                json={"jobs": jobs or []},
            )
            response.raise_for_status()
            return response.json()["token"]

    return get_token


def make_client(ws_url: str, get_token: Any, watcher: Watcher) -> Client:
    return Client(ws_url, get_token=get_token, events=watcher, timeout=10.0)
