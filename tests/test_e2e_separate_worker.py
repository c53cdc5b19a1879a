"""A worker in its own process, with no shared broker, still reaches the
clients of the serving node: its messages go through the database."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hn_fixture import STORY_ID, serve_hackernews
from servers import run_server, spawn_worker, stop
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_a_separate_worker_on_sqlite_reports_through_the_serving_node(
    tmp_path: Path,
) -> None:
    with (
        serve_hackernews() as hn,
        run_server(
            tmp_path / "data",
            "--no-worker",
            EXPORTHUB_HACKERNEWS_API=hn.base_url,
            EXPORTHUB_OUTBOX_INTERVAL="0.1",
        ) as server,
    ):
        worker = spawn_worker(server.env, tmp_path / "worker.log")
        alice = server.create_user("alice@example.com")
        watcher = Watcher()
        client = make_client(
            server.ws_url, token_getter(server.url, alice["api_key"]), watcher
        )
        await client.connect()
        try:
            await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.post(
                    "/api/v3/job",
                    headers={"X-AUTH-TOKEN": alice["api_key"]},
                    json={"url": f"https://news.ycombinator.com/item?id={STORY_ID}"},
                )
            exports = f"exports:{alice['uuid']}"
            await watcher.wait_for(
                lambda: (
                    [m["event"] for m in watcher.on(exports)][-1:] == ["job.finished"]
                )
            )
            assert [m["event"] for m in watcher.on(exports)] == [
                "job.created",
                "job.finished",
            ]
            assert watcher.on(exports)[-1]["details"]["totalExported"] == 5
        finally:
            await client.disconnect()
            stop(worker)
