"""Several real server processes sharing the real Redis and PostgreSQL:
publications cross nodes, history outlives a node, and a node that shuts
down sends its clients elsewhere (3001) without losing an event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends import REDIS_URL, redis_port
from following import (
    Follower,
    create_job,
    exported_so_far,
    follow,
    history,
    wait_for_status,
    ws_url,
)
from hn_fixture import STORY_ID
from netproxy import proxy_to
from servers import start_server, stop

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.timeout(120)]

STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"
HELD_ITEM = 9003
SHUTDOWN = (3001, "shutdown")


@pytest.fixture
def shared(hn, redis_prefix: str, postgres_url: str) -> Iterator[dict[str, str]]:
    """The settings every node of one deployment shares."""
    yield {
        "EXPORTHUB_DATABASE_URL": postgres_url,
        "EXPORTHUB_BROKER": REDIS_URL,
        "EXPORTHUB_BROKER_PREFIX": redis_prefix,
        "EXPORTHUB_HACKERNEWS_API": hn.base_url,
        "EXPORTHUB_PROGRESS_INTERVAL": "0.2",
    }


async def test_a_job_run_on_one_node_reaches_a_subscriber_on_another(
    tmp_path: Path, shared: dict[str, str]
) -> None:
    data = tmp_path / "data"
    with (
        start_server(data, "--no-worker", **shared) as a,
        start_server(data, **shared) as b,
    ):
        alice = a.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(a.ws_url, a.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            await create_job(b.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
        finally:
            await client.disconnect()
        kept = await history(b.ws_url, b.url, alice["api_key"], exports)
    assert follower.stream(exports) == kept
    assert [offset for offset, _ in kept] == list(range(1, len(kept) + 1))
    assert (kept[0][1]["event"], kept[-1][1]["event"]) == (
        "job.created",
        "job.finished",
    )


async def test_a_node_shutting_down_sends_its_clients_to_another_without_loss(
    tmp_path: Path, shared: dict[str, str], hn
) -> None:
    data = tmp_path / "data"
    gate = hn.hold(HELD_ITEM)
    with (
        start_server(data, "--no-worker", **shared) as a,
        start_server(data, **shared) as b,
        proxy_to(a.port) as proxy,
    ):
        alice = a.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(ws_url(proxy.port), a.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            job = await create_job(b.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: exported_so_far(follower, exports) == 4)
            proxy.point_to(b.port)
            stop(a.process)
            await follower.wait_for(lambda: follower.connects == 2)
            gate.set()
            await wait_for_status(b.url, alice["api_key"], job["guid"], "done")
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
        finally:
            await client.disconnect()
        kept = await history(b.ws_url, b.url, alice["api_key"], exports)
    assert follower.connecting[-1] == SHUTDOWN
    [again] = follower.resubscriptions(exports)
    assert (again.was_recovering, again.recovered) == (True, True)
    assert follower.stream(exports) == kept


async def test_history_outlives_a_restart_of_the_only_node(
    tmp_path: Path, shared: dict[str, str]
) -> None:
    data = tmp_path / "data"
    with start_server(data, **shared) as node, proxy_to(node.port) as proxy:
        alice = node.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(ws_url(proxy.port), node.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            proxy.down()
            job = await create_job(node.url, alice["api_key"], STORY_URL)
            await wait_for_status(node.url, alice["api_key"], job["guid"], "done")
            stop(node.process)
            with start_server(data, port=node.port, **shared) as restarted:
                proxy.up()
                await follower.wait_for(
                    lambda: "job.finished" in follower.events(exports)
                )
                kept = await history(
                    restarted.ws_url, restarted.url, alice["api_key"], exports
                )
        finally:
            await client.disconnect()
    [again] = follower.resubscriptions(exports)
    assert (again.was_recovering, again.recovered) == (True, True)
    assert (
        again.stream_position.epoch
        == follower.subscriptions_of(exports)[0].stream_position.epoch
    )
    assert follower.stream(exports) == kept
    assert [offset for offset, _ in kept] == list(range(1, len(kept) + 1))


async def test_a_node_that_lost_redis_delivers_what_was_published_meanwhile(
    tmp_path: Path, shared: dict[str, str], hn
) -> None:
    data = tmp_path / "data"
    gate = hn.hold(HELD_ITEM)
    with (
        start_server(data, **shared) as b,
        proxy_to(redis_port()) as redis_link,
        start_server(
            data,
            "--no-worker",
            **{**shared, "EXPORTHUB_BROKER": f"redis://127.0.0.1:{redis_link.port}/0"},
        ) as a,
    ):
        alice = a.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(a.ws_url, a.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            job = await create_job(b.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: exported_so_far(follower, exports) == 4)
            redis_link.down()
            gate.set()
            await wait_for_status(b.url, alice["api_key"], job["guid"], "done")
            async with httpx.AsyncClient() as http:
                cut_off = (await http.get(f"{a.url}/health")).status_code
            redis_link.up()
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
        finally:
            await client.disconnect()
        kept = await history(b.ws_url, b.url, alice["api_key"], exports)
    assert cut_off == 503
    assert follower.connects == 1
    assert follower.stream(exports) == kept
