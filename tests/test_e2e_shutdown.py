"""Stopping the server while a job runs hands the job back, and the next
start finishes it; the interrupted attempt is not held against the job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from hn_fixture import STORY_ID, serve_hackernews
from servers import run_server, stop, websocket_request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def job_state(server, api_key: str, guid: str) -> dict:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(
            f"/api/v3/job/{guid}", headers={"X-AUTH-TOKEN": api_key}
        )
    return response.json()


async def wait_status(server, api_key: str, guid: str, status: str) -> dict:
    for _ in range(200):
        job = await job_state(server, api_key, guid)
        if job["status"] == status:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job never reached {status}: {job}")


async def test_a_job_running_at_shutdown_is_requeued_and_finished_after_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with serve_hackernews() as hn:
        held = hn.hold(9003)
        env = {"EXPORTHUB_HACKERNEWS_API": hn.base_url}
        with run_server(data, **env) as server:
            alice = server.create_user("alice@example.com")
            async with httpx.AsyncClient(base_url=server.url) as http:
                job = (
                    await http.post(
                        "/api/v3/job",
                        headers={"X-AUTH-TOKEN": alice["api_key"]},
                        json={
                            "url": f"https://news.ycombinator.com/item?id={STORY_ID}"
                        },
                    )
                ).json()
            await wait_status(server, alice["api_key"], job["guid"], "progress")
        # Stopped with SIGTERM while the job waits for the held comment.
        log = server.log()
        assert f"job {job['guid']} requeued: worker shutting down" in log
        held.set()
        with run_server(data, **env) as again:
            done = await wait_status(again, alice["api_key"], job["guid"], "done")
    assert done["total_exported"] == 5
    assert done["attempts"] == 1


async def test_a_client_that_does_not_answer_the_shutdown_close_is_not_waited_for(
    tmp_path: Path,
) -> None:
    drain_timeout = 2
    with run_server(
        tmp_path / "data", EXPORTHUB_DRAIN_TIMEOUT=str(drain_timeout)
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(websocket_request("127.0.0.1"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 ")
            # This client reads nothing more and never answers a close.
            started = time.monotonic()
            stop(server.process)
            stopped_after = time.monotonic() - started
        finally:
            writer.close()
    assert drain_timeout <= stopped_after < drain_timeout + 4
    assert (
        f"1 connections still open after {drain_timeout}s of draining" in server.log()
    )
