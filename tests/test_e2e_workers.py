"""Separate ``exporthub worker`` processes sharing one PostgreSQL queue and
one Redis, beside an ``exporthub serve --no-worker``: a worker killed in
the middle of a job, and workers stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

import backends
from backends import REDIS_URL
from following import Follower, create_job, follow, history, wait_for_status
from hn_fixture import EXPECTED_ROWS, STORY_ID
from servers import free_port, run_worker, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(120)]

STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"
HELD_ITEM = 9003
LEASE = "2"
"""Seconds: a killed worker's job is requeued this long after its last
heartbeat (plus one reaper tick)."""
EXIT_TIMEOUT = 20


def exported_so_far(follower: Follower, channel: str) -> int:
    return max((d.get("current") or 0 for _, d in follower.stream(channel)), default=0)


def steps(follower: Follower, channel: str) -> list[str]:
    """The events of ``channel`` but progress."""
    return [e for e in follower.events(channel) if e != "job.progress"]


def worker_running(postgres_url: str, guid: str) -> int:
    """The process id of the worker that holds job ``guid``."""
    [row] = backends.fetch(
        postgres_url, "SELECT locked_by FROM jobs WHERE guid = $1", guid
    )
    _host, pid, _run = row["locked_by"].split(":")
    return int(pid)


@pytest.fixture
def node_port() -> int:
    return free_port()


@pytest.fixture
def shared(
    hn, redis_prefix: str, postgres_url: str, node_port: int
) -> Iterator[dict[str, str]]:
    """Settings of the node and its workers; download links in the events
    the workers publish point to the node."""
    yield {
        "EXPORTHUB_PUBLIC_URL": f"http://127.0.0.1:{node_port}",
        "EXPORTHUB_DATABASE_URL": postgres_url,
        "EXPORTHUB_BROKER": REDIS_URL,
        "EXPORTHUB_BROKER_PREFIX": redis_prefix,
        "EXPORTHUB_HACKERNEWS_API": hn.base_url,
        "EXPORTHUB_PROGRESS_INTERVAL": "0.2",
        "EXPORTHUB_JOB_LEASE": LEASE,
    }


async def test_a_job_whose_worker_is_killed_is_finished_by_another_without_loss(
    tmp_path: Path, shared: dict[str, str], postgres_url: str, node_port: int, hn
) -> None:
    data = tmp_path / "data"
    gate = hn.hold(HELD_ITEM)
    with (
        start_server(data, "--no-worker", port=node_port, **shared) as node,
        run_worker(data, **shared) as first,
        run_worker(data, **shared) as second,
    ):
        alice = node.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(node.ws_url, node.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            job = await create_job(node.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: exported_so_far(follower, exports) == 4)
            killed = worker_running(postgres_url, job["guid"])
            os.kill(killed, signal.SIGKILL)
            gate.set()
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
            kept = await history(node.ws_url, node.url, alice["api_key"], exports)
            finished = follower.stream(exports)[-1][1]
            async with httpx.AsyncClient() as http:
                response = await http.get(finished["details"]["json_url"])
        finally:
            await client.disconnect()
        survivors = [p.pid for p in (first, second) if p.poll() is None]
    assert steps(follower, exports) == ["job.created", "job.requeued", "job.finished"]
    [requeued] = [
        d for _, d in follower.stream(exports) if d["event"] == "job.requeued"
    ]
    assert requeued["details"]["reason"] == "worker lost"
    assert follower.stream(exports) == kept
    assert [offset for offset, _ in kept] == list(range(1, len(kept) + 1))
    assert orjson.loads(response.content) == EXPECTED_ROWS
    # No partial file of the killed run is left beside the finished files.
    assert sorted(p.name for p in (data / "files" / job["guid"]).iterdir()) == [
        f"hackernews-{job['guid']}.{ext}" for ext in ("json", "ndjson", "xlsx")
    ]
    assert len(survivors) == 1
    assert killed not in survivors


async def test_a_worker_stopped_with_sigterm_finishes_its_running_job(
    tmp_path: Path, shared: dict[str, str], node_port: int, hn
) -> None:
    data = tmp_path / "data"
    gate = hn.hold(HELD_ITEM)
    with (
        start_server(data, "--no-worker", port=node_port, **shared) as node,
        run_worker(data, **{**shared, "EXPORTHUB_SHUTDOWN_GRACE": "30"}) as worker,
    ):
        alice = node.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(node.ws_url, node.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            job = await create_job(node.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: exported_so_far(follower, exports) == 4)
            worker.send_signal(signal.SIGTERM)
            gate.set()
            await wait_for_status(node.url, alice["api_key"], job["guid"], "done")
            exit_code = worker.wait(EXIT_TIMEOUT)
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
        finally:
            await client.disconnect()
    assert exit_code == 0
    assert steps(follower, exports) == ["job.created", "job.finished"]


async def test_a_worker_stopped_with_sigterm_requeues_a_job_it_cannot_finish(
    tmp_path: Path, shared: dict[str, str], node_port: int, hn
) -> None:
    data = tmp_path / "data"
    gate = hn.hold(HELD_ITEM)
    short = {**shared, "EXPORTHUB_SHUTDOWN_GRACE": "0.2"}
    with (
        start_server(data, "--no-worker", port=node_port, **shared) as node,
        run_worker(data, **short) as stopping,
    ):
        alice = node.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(node.ws_url, node.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            job = await create_job(node.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: exported_so_far(follower, exports) == 4)
            stopping.send_signal(signal.SIGTERM)
            exit_code = stopping.wait(EXIT_TIMEOUT)
            await follower.wait_for(lambda: "job.requeued" in follower.events(exports))
            gate.set()
            with run_worker(data, **shared):
                await wait_for_status(node.url, alice["api_key"], job["guid"], "done")
                await follower.wait_for(
                    lambda: "job.finished" in follower.events(exports)
                )
        finally:
            await client.disconnect()
    assert exit_code == 0
    assert steps(follower, exports) == ["job.created", "job.requeued", "job.finished"]
    [requeued] = [
        d for _, d in follower.stream(exports) if d["event"] == "job.requeued"
    ]
    assert requeued["details"]["reason"] == "worker shutting down"
