"""A user's side of the webhook API on a running server, for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from hn_fixture import STORY_ID

STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"
WAIT = 20.0
POLL = 0.05
LOOPBACK_ONLY = "127.0.0.0/8"

T = TypeVar("T")


class UserApi:
    """Calls the API with one user's key."""

    def __init__(self, http: httpx.AsyncClient, api_key: str) -> None:
        self.http = http
        self.headers = {"X-AUTH-TOKEN": api_key}

    async def register(self, url: str, events: list[str] | None = None) -> Any:
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = events
        response = await self.http.post(
            "/api/v3/webhooks", headers=self.headers, json=body
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.http.post(path, headers=self.headers, json=body)

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path, headers=self.headers)

    async def delete(self, path: str) -> httpx.Response:
        return await self.http.delete(path, headers=self.headers)

    async def job(self, url: str = STORY_URL) -> Any:
        response = await self.post("/api/v3/job", {"url": url})
        assert response.status_code == 201, response.text
        return response.json()

    async def job_status(self, guid: str) -> str:
        return (await self.get(f"/api/v3/job/{guid}")).json()["status"]

    async def deliveries(self, webhook_id: int) -> list[dict[str, Any]]:
        """Every delivery of the endpoint, oldest first."""
        response = await self.get(
            f"/api/v3/webhooks/{webhook_id}/deliveries?per_page=100"
        )
        assert response.status_code == 200, response.text
        return list(reversed(response.json()["data"]))

    async def ended_deliveries(
        self, webhook_id: int, count: int, within: float = WAIT
    ) -> list[Any]:
        """Wait until ``count`` deliveries exist and none is pending."""

        def ended(found: list[Any]) -> bool:
            return len(found) >= count and all(d["status"] != "pending" for d in found)

        return await eventually(lambda: self.deliveries(webhook_id), ended, within)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    within: float = WAIT,
) -> T:
    """Call ``probe`` until ``check`` holds on its result; fail with the last."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out; last seen {value!r}")
        await asyncio.sleep(POLL)
