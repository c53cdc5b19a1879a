"""Recovery end to end: the unmodified centrifuge-python client loses its
connection in the middle of a job (a proxy between it and the server cuts
the link), events happen, and it reconnects."""

from __future__ import annotations

from pathlib import Path

import pytest
from centrifuge.exceptions import ReplyError

from following import (
    ChannelFollower,
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
from servers import run_server, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"
HELD_ITEM = 9003
"""The last top-level comment: the job waits there with four exported."""
PROGRESS_INTERVAL = "0.2"


async def test_a_python_client_cut_off_mid_job_recovers_every_missed_event_once(
    tmp_path: Path, hn
) -> None:
    gate = hn.hold(HELD_ITEM)
    with (
        run_server(
            tmp_path / "data",
            EXPORTHUB_HACKERNEWS_API=hn.base_url,
            EXPORTHUB_PROGRESS_INTERVAL=PROGRESS_INTERVAL,
        ) as server,
        proxy_to(server.port) as proxy,
    ):
        alice = server.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(ws_url(proxy.port), server.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            job = await create_job(server.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: exported_so_far(follower, exports) == 4)
            proxy.down()
            gate.set()
            await wait_for_status(server.url, alice["api_key"], job["guid"], "done")
            before = len(follower.stream(exports))
            proxy.up()
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
            kept = await history(server.ws_url, server.url, alice["api_key"], exports)
        finally:
            await client.disconnect()
    [again] = follower.resubscriptions(exports)
    assert (again.was_recovering, again.recovered) == (True, True)
    assert follower.stream(exports) == kept
    assert [offset for offset, _ in kept] == list(range(1, len(kept) + 1))
    assert len(kept) > before
    assert follower.events(exports)[-1] == "job.finished"


async def test_a_client_side_job_subscription_cut_off_mid_job_recovers_once(
    tmp_path: Path, hn
) -> None:
    gate = hn.hold(HELD_ITEM)
    with (
        run_server(
            tmp_path / "data",
            EXPORTHUB_HACKERNEWS_API=hn.base_url,
            EXPORTHUB_PROGRESS_INTERVAL=PROGRESS_INTERVAL,
        ) as server,
        proxy_to(server.port) as proxy,
    ):
        alice = server.create_user("alice@example.com")
        follower = Follower()
        client = follow(ws_url(proxy.port), server.url, alice["api_key"], follower)
        await client.connect()
        try:
            job = await create_job(server.url, alice["api_key"], STORY_URL)
            channel = f"export.{job['guid']}.job"
            events = ChannelFollower(follower)
            await client.new_subscription(channel, events=events).subscribe()
            await follower.wait_for(lambda: exported_so_far(follower, channel) == 4)
            proxy.down()
            gate.set()
            await wait_for_status(server.url, alice["api_key"], job["guid"], "done")
            proxy.up()
            await follower.wait_for(lambda: "job.finished" in follower.events(channel))
            kept = await history(server.ws_url, server.url, alice["api_key"], channel)
        finally:
            await client.disconnect()
    first, again = events.subscribed
    assert (again.was_recovering, again.recovered) == (True, True)
    assert again.stream_position.epoch == first.stream_position.epoch
    # Everything published after the subscription, exactly once, in order.
    since = first.stream_position.offset
    assert follower.stream(channel) == [(o, d) for o, d in kept if o > since]
    assert [offset for offset, _ in kept] == list(range(1, len(kept) + 1))


async def test_a_client_that_missed_more_than_the_history_keeps_gets_recovered_false(
    tmp_path: Path, hn
) -> None:
    with (
        run_server(
            tmp_path / "data",
            EXPORTHUB_HACKERNEWS_API=hn.base_url,
            EXPORTHUB_PROGRESS_INTERVAL=PROGRESS_INTERVAL,
            EXPORTHUB_HISTORY_EXPORTS="1/600s",
        ) as server,
        proxy_to(server.port) as proxy,
    ):
        alice = server.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(ws_url(proxy.port), server.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            proxy.down()
            job = await create_job(server.url, alice["api_key"], STORY_URL)
            await wait_for_status(server.url, alice["api_key"], job["guid"], "done")
            proxy.up()
            await follower.wait_for(lambda: follower.resubscriptions(exports) != [])
        finally:
            await client.disconnect()
    [again] = follower.resubscriptions(exports)
    assert (again.was_recovering, again.recovered) == (True, False)
    assert follower.stream(exports) == []


async def test_after_a_restart_of_a_memory_node_recovery_says_recovered_false(
    tmp_path: Path, hn
) -> None:
    settings = {
        "EXPORTHUB_HACKERNEWS_API": hn.base_url,
        "EXPORTHUB_PROGRESS_INTERVAL": PROGRESS_INTERVAL,
    }
    data = tmp_path / "data"
    with start_server(data, **settings) as first, proxy_to(first.port) as proxy:
        alice = first.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        follower = Follower()
        client = follow(ws_url(proxy.port), first.url, alice["api_key"], follower)
        await client.connect()
        try:
            await follower.wait_for(lambda: exports in follower.subscribed)
            await create_job(first.url, alice["api_key"], STORY_URL)
            await follower.wait_for(lambda: "job.finished" in follower.events(exports))
            proxy.down()
            first.process.terminate()
            first.process.wait(10)
            with start_server(data, port=first.port, **settings):
                proxy.up()
                await follower.wait_for(lambda: follower.resubscriptions(exports) != [])
        finally:
            await client.disconnect()
    [again] = follower.resubscriptions(exports)
    assert (again.was_recovering, again.recovered) == (True, False)
    first_epoch = follower.subscriptions_of(exports)[0].stream_position.epoch
    assert again.stream_position.epoch != first_epoch


async def test_the_history_command_gives_a_user_the_events_of_their_channel(
    tmp_path: Path, hn
) -> None:
    with run_server(tmp_path / "data", EXPORTHUB_HACKERNEWS_API=hn.base_url) as server:
        alice = server.create_user("alice@example.com")
        exports = f"exports:{alice['uuid']}"
        job = await create_job(server.url, alice["api_key"], STORY_URL)
        await wait_for_status(server.url, alice["api_key"], job["guid"], "done")
        kept = await history(server.ws_url, server.url, alice["api_key"], exports)
    assert (kept[0][0], kept[0][1]["event"]) == (1, "job.created")
    assert kept[-1][1]["event"] == "job.finished"
    assert kept[-1][1]["details"]["totalExported"] == 5


async def test_the_history_command_refuses_another_users_channel(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path / "data") as server:
        alice = server.create_user("alice@example.com")
        bob = server.create_user("bob@example.com")
        with pytest.raises(ReplyError) as refused:
            await history(
                server.ws_url, server.url, alice["api_key"], f"exports:{bob['uuid']}"
            )
    assert refused.value.code == 103
