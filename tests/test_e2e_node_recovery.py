"""Recovery end to end with the unmodified `centrifuge` client from npm,
under Node: its connection is cut in the middle of a job, events happen,
and it reconnects through the same proxy."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from following import create_job, history, wait_for_status
from hn_fixture import STORY_ID, serve_hackernews
from netproxy import proxy_to
from servers import run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = "follow_events.mjs"
STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"
HELD_ITEM = 9003
WAIT = 30.0
QUIT_TIMEOUT = 10.0


class NodeClient:
    """What the npm client reports, line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.reports: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.reports.append(json.loads(line))
            self._changed.set()

    def of(self, kind: str, channel: str) -> list[dict[str, Any]]:
        return [
            r for r in self.reports if r["type"] == kind and r.get("channel") == channel
        ]

    def stream(self, channel: str) -> list[tuple[int, Any]]:
        return [(r["offset"], r["data"]) for r in self.of("publication", channel)]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), WAIT)
        except TimeoutError:
            raise AssertionError(f"timed out; reports: {self.reports}") from None


@asynccontextmanager
async def npm_client(
    ws_url: str, server_url: str, api_key: str
) -> AsyncIterator[NodeClient]:
    node = shutil.which("node")
    assert node, "Node.js is required for this test"
    assert (NODE_DIR / "node_modules" / "centrifuge").is_dir(), "run make test"
    process = await asyncio.create_subprocess_exec(
        node,
        SCRIPT,
        ws_url,
        server_url,
        api_key,
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    client = NodeClient(process)
    reader = asyncio.ensure_future(client.read())
    try:
        yield client
    finally:
        assert process.stdin is not None
        if process.returncode is None:
            process.stdin.write(b"quit\n")
            try:
                await asyncio.wait_for(process.wait(), QUIT_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        reader.cancel()


def exported_so_far(client: NodeClient, channel: str) -> int:
    return max((d.get("current") or 0 for _, d in client.stream(channel)), default=0)


async def test_the_npm_client_cut_off_mid_job_recovers_every_missed_event_once(
    tmp_path: Path,
) -> None:
    with serve_hackernews() as hn:
        gate = hn.hold(HELD_ITEM)
        with (
            run_server(
                tmp_path / "data",
                EXPORTHUB_HACKERNEWS_API=hn.base_url,
                EXPORTHUB_PROGRESS_INTERVAL="0.2",
            ) as server,
            proxy_to(server.port) as proxy,
        ):
            alice = server.create_user("alice@example.com")
            exports = f"exports:{alice['uuid']}"
            ws_url = f"ws://127.0.0.1:{proxy.port}/connection/websocket"
            async with npm_client(ws_url, server.url, alice["api_key"]) as client:
                await client.wait_for(lambda: client.of("subscribed", exports) != [])
                job = await create_job(server.url, alice["api_key"], STORY_URL)
                await client.wait_for(lambda: exported_so_far(client, exports) == 4)
                proxy.down()
                gate.set()
                await wait_for_status(server.url, alice["api_key"], job["guid"], "done")
                before = len(client.stream(exports))
                proxy.up()
                await client.wait_for(
                    lambda: any(
                        d["event"] == "job.finished" for _, d in client.stream(exports)
                    )
                )
            kept = await history(server.ws_url, server.url, alice["api_key"], exports)
    first, again = client.of("subscribed", exports)
    assert (again["wasRecovering"], again["recovered"]) == (True, True)
    assert again["epoch"] == first["epoch"]
    assert client.stream(exports) == kept
    assert [offset for offset, _ in kept] == list(range(1, len(kept) + 1))
    assert len(kept) > before
