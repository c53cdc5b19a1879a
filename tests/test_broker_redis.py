"""The Redis broker against the real Redis: publications between nodes,
history with epoch and offsets, restarts and a lost pub/sub connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
import pytest
import redis.asyncio

from backends import REDIS_URL, redis_port
from exporthub.realtime import ChannelOptions, HistoryOptions, Node, NodeConfig
from exporthub.realtime.broker import JOIN, LEAVE, PresenceStats, StreamPosition
from exporthub.realtime.broker.redis import BrokerUnavailable, RedisBroker
from exporthub.realtime.protocol import ClientInfo, Publication
from exporthub.realtime.session import Session
from exporthub.realtime.tokens import issue
from netproxy import proxy_to
from test_session import SECRET, RecordingTransport

HISTORY = HistoryOptions(size=3, ttl=60)
CHANNEL = "exports:u1"
WAIT = 10.0


class Received:
    """What a broker handed to its node, by channel."""

    def __init__(self) -> None:
        self.publications: list[tuple[str, Publication]] = []
        self.events: list[tuple[str, str, ClientInfo]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, publication: Publication) -> None:
        self.publications.append((channel, publication))
        self._changed.set()

    def join_leave(self, channel: str, kind: str, info: ClientInfo) -> None:
        self.events.append((channel, kind, info))
        self._changed.set()

    def offsets(self, channel: str = CHANNEL) -> list[int]:
        return [p.offset for c, p in self.publications if c == channel]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), WAIT)


@asynccontextmanager
async def broker(
    prefix: str, url: str = REDIS_URL, **kwargs: float
) -> AsyncIterator[tuple[RedisBroker, Received]]:
    received = Received()
    instance = RedisBroker(url, prefix=prefix, **kwargs)
    await instance.start(received)
    try:
        yield instance, received
    finally:
        await instance.close()


def via(proxy_port: int) -> str:
    return f"redis://127.0.0.1:{proxy_port}/0"


async def test_a_publication_on_one_node_reaches_the_handler_of_another(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, a_got), broker(redis_prefix) as (b, _):
        await a.subscribe(CHANNEL)
        position = await b.publish(CHANNEL, b'{"n":1}', HISTORY)
        await a_got.wait_for(lambda: len(a_got.publications) == 1)
    [(channel, publication)] = a_got.publications
    assert channel == CHANNEL
    assert publication == Publication(
        b'{"n":1}', 1, publication.time_ms, position.epoch
    )


async def test_offsets_go_up_by_one_per_publication_in_one_epoch(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _), broker(redis_prefix) as (b, _):
        positions = [
            await node.publish(CHANNEL, b"{}", HISTORY) for node in (a, b, a, b)
        ]
    assert [p.offset for p in positions] == [1, 2, 3, 4]
    assert len({p.epoch for p in positions}) == 1


async def test_history_keeps_the_last_size_publications_in_offset_order(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _):
        for n in range(5):
            last = await a.publish(CHANNEL, b"%d" % n, HISTORY)
        result = await a.history(CHANNEL)
    assert [(p.offset, p.data) for p in result.publications] == [
        (3, b"2"),
        (4, b"3"),
        (5, b"4"),
    ]
    assert result.position == last


async def test_history_since_a_position_returns_only_later_publications(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _):
        first = await a.publish(CHANNEL, b"1", HISTORY)
        await a.publish(CHANNEL, b"2", HISTORY)
        await a.publish(CHANNEL, b"3", HISTORY)
        result = await a.history(CHANNEL, since=first)
    assert [p.data for p in result.publications] == [b"2", b"3"]
    assert {p.epoch for p in result.publications} == {first.epoch}


async def test_history_reversed_with_a_limit_gives_the_newest_first(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _):
        for n in range(3):
            await a.publish(CHANNEL, b"%d" % n, HISTORY)
        result = await a.history(CHANNEL, limit=2, reverse=True)
    assert [p.offset for p in result.publications] == [3, 2]


async def test_history_with_limit_zero_gives_only_the_position(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _):
        empty = await a.history(CHANNEL, limit=0)
        position = await a.publish(CHANNEL, b"1", HISTORY)
        result = await a.history(CHANNEL, limit=0)
    assert result.publications == []
    assert result.position == position
    assert empty.position == StreamPosition(0, position.epoch)


async def test_history_and_offsets_survive_a_restart_of_the_node(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _):
        await a.publish(CHANNEL, b"1", HISTORY)
        before = await a.publish(CHANNEL, b"2", HISTORY)
    async with broker(redis_prefix) as (restarted, _):
        result = await restarted.history(CHANNEL)
        after = await restarted.publish(CHANNEL, b"3", HISTORY)
    assert [p.data for p in result.publications] == [b"1", b"2"]
    assert result.position == before
    assert after == StreamPosition(3, before.epoch)


async def test_history_expires_after_its_ttl_and_the_epoch_stays(
    redis_prefix: str,
) -> None:
    short = HistoryOptions(size=3, ttl=0.2)
    async with broker(redis_prefix) as (a, _):
        first = await a.publish(CHANNEL, b"1", short)
        await asyncio.sleep(0.4)
        expired = await a.history(CHANNEL)
        second = await a.publish(CHANNEL, b"2", short)
    assert expired.publications == []
    assert expired.position == first
    assert second == StreamPosition(2, first.epoch)


async def test_a_channel_forgotten_after_the_meta_ttl_starts_a_new_epoch(
    redis_prefix: str,
) -> None:
    short = HistoryOptions(size=3, ttl=0.1)
    async with broker(redis_prefix, meta_ttl=0.2) as (a, _):
        first = await a.publish(CHANNEL, b"1", short)
        await asyncio.sleep(0.4)
        second = await a.publish(CHANNEL, b"2", short)
    assert second.offset == 1
    assert second.epoch != first.epoch


async def test_publishing_writes_the_stream_with_its_ttl_and_the_meta(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _):
        position = await a.publish(CHANNEL, b'{"n":1}', HISTORY)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        meta = await client.hgetall(f"{redis_prefix}.meta.{CHANNEL}")
        entries = await client.xrange(f"{redis_prefix}.stream.{CHANNEL}")
        ttl = await client.pttl(f"{redis_prefix}.stream.{CHANNEL}")
    finally:
        await client.aclose()
    assert meta == {b"e": position.epoch.encode(), b"s": b"1"}
    [(entry_id, fields)] = entries
    assert entry_id == b"1-0"
    assert fields[b"d"] == b'{"n":1}'
    assert 0 < ttl <= 60_000


async def test_a_publish_retried_with_the_same_token_is_applied_once(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, got):
        await a.subscribe(CHANNEL)
        keys = [
            f"{redis_prefix}.stream.{CHANNEL}",
            f"{redis_prefix}.meta.{CHANNEL}",
            f"{redis_prefix}.result.retried",
        ]
        args = [
            b"1",
            3,
            60_000,
            60_000,
            "e1",
            f"{redis_prefix}.pub.{CHANNEL}",
            0,
            60_000,
        ]
        first = await a._publish_script(keys=keys, args=args)
        again = await a._publish_script(keys=keys, args=args)
        result = await a.history(CHANNEL)
        await got.wait_for(lambda: len(got.publications) == 1)
    assert again == first
    assert [p.offset for p in result.publications] == [1]


async def test_a_channel_without_history_is_delivered_with_offset_zero(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, got):
        await a.subscribe("user:u1")
        position = await a.publish("user:u1", b"{}", HistoryOptions())
        await got.wait_for(lambda: len(got.publications) == 1)
    assert position == StreamPosition(0, "")
    assert got.publications[0][1].offset == 0


async def test_removing_history_keeps_the_offsets_going(redis_prefix: str) -> None:
    async with broker(redis_prefix) as (a, _):
        first = await a.publish(CHANNEL, b"1", HISTORY)
        await a.remove_history(CHANNEL)
        emptied = await a.history(CHANNEL)
        second = await a.publish(CHANNEL, b"2", HISTORY)
    assert emptied.publications == []
    assert second == StreamPosition(2, first.epoch)


async def test_a_node_that_unsubscribes_receives_nothing_more(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, got), broker(redis_prefix) as (b, _):
        await a.subscribe(CHANNEL)
        await b.publish(CHANNEL, b"1", HISTORY)
        await got.wait_for(lambda: len(got.publications) == 1)
        await a.unsubscribe(CHANNEL)
        await b.publish(CHANNEL, b"2", HISTORY)
        await a.subscribe("exports:u2")
        await b.publish("exports:u2", b"3", HISTORY)
        await got.wait_for(lambda: len(got.publications) == 2)
    assert [(c, p.data) for c, p in got.publications] == [
        (CHANNEL, b"1"),
        ("exports:u2", b"3"),
    ]


async def test_an_unsubscribe_overtaken_by_a_new_subscribe_keeps_the_channel(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, got), broker(redis_prefix) as (b, _):
        await a.subscribe(CHANNEL)
        # The last local subscriber leaves and a new one joins before the
        # node's unsubscribe ran: the channel must stay subscribed.
        await a.subscribe(CHANNEL)
        await a.unsubscribe(CHANNEL)
        await b.publish(CHANNEL, b"1", HISTORY)
        await got.wait_for(lambda: len(got.publications) == 1)
    assert got.offsets() == [1]


async def test_publications_missed_while_pubsub_was_cut_arrive_in_order_once(
    redis_prefix: str,
) -> None:
    with proxy_to(redis_port()) as proxy:
        async with (
            broker(redis_prefix, via(proxy.port)) as (a, got),
            broker(redis_prefix) as (b, _),
        ):
            await a.subscribe(CHANNEL)
            await b.publish(CHANNEL, b"1", HISTORY)
            await got.wait_for(lambda: got.offsets() == [1])
            proxy.down()
            for n in (2, 3):
                await b.publish(CHANNEL, b"%d" % n, HISTORY)
            proxy.up()
            await got.wait_for(lambda: len(got.offsets()) >= 3)
            await b.publish(CHANNEL, b"4", HISTORY)
            await got.wait_for(lambda: len(got.offsets()) >= 4)
    assert got.offsets() == [1, 2, 3, 4]


async def test_ping_fails_while_the_pubsub_connection_is_down(
    redis_prefix: str,
) -> None:
    with proxy_to(redis_port()) as proxy:
        async with broker(redis_prefix, via(proxy.port)) as (a, _):
            await a.ping()
            proxy.down()
            with pytest.raises((BrokerUnavailable, redis.exceptions.RedisError)):
                for _ in range(50):
                    await a.ping()
                    await asyncio.sleep(0.05)


async def test_a_session_on_one_node_receives_what_another_node_publishes(
    redis_prefix: str,
) -> None:
    options = ChannelOptions(history=HISTORY)
    config = NodeConfig(ping_interval=0, namespaces={"exports": options})
    a = Node(config, SECRET, broker=RedisBroker(REDIS_URL, prefix=redis_prefix))
    b = Node(config, SECRET, broker=RedisBroker(REDIS_URL, prefix=redis_prefix))
    await a.start()
    await b.start()
    try:
        transport = RecordingTransport()
        session = Session(a, transport)
        token = issue(SECRET, "u1", ttl=60, channels=[CHANNEL])
        await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
        await b.publish(CHANNEL, {"event": "job.created"})
        for _ in range(100):
            if len(transport.sent) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await a.shutdown()
        await b.shutdown()
    connect, push = transport.sent
    assert connect["connect"]["subs"][CHANNEL]["offset"] == 0
    assert push == {
        "push": {
            "channel": CHANNEL,
            "pub": {"data": {"event": "job.created"}, "offset": 1},
        }
    }


@pytest.mark.xfail(
    strict=True,
    raises=redis.exceptions.ConnectionError,
    reason="a publication made while Redis stays unreachable for longer than the "
    "publish retry window is lost; the publisher gets the Redis error.",
)
async def test_a_publication_made_while_redis_is_unreachable_arrives_later(
    redis_prefix: str,
) -> None:
    with proxy_to(redis_port()) as proxy:
        async with (
            broker(redis_prefix) as (a, got),
            broker(redis_prefix, via(proxy.port), publish_retry_for=0.3) as (b, _),
        ):
            await a.subscribe(CHANNEL)
            proxy.down()
            await b.publish(CHANNEL, b"1", HISTORY)
            await got.wait_for(lambda: got.offsets() == [1])


# -- presence and join/leave ------------------------------------------------

ALICE = ClientInfo("alice", "c1", b'{"seat":1}')
BOB = ClientInfo("bob", "c2")


async def test_presence_lists_the_connections_of_every_node(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _), broker(redis_prefix) as (b, _):
        await a.add_presence(CHANNEL, ALICE)
        await b.add_presence(CHANNEL, BOB)
        seen_from_a = await a.presence(CHANNEL)
        stats = await b.presence_stats(CHANNEL)
    assert seen_from_a == {"c1": ALICE, "c2": BOB}
    assert stats == PresenceStats(num_clients=2, num_users=2)


async def test_a_connection_removed_from_presence_is_gone_on_every_node(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, _), broker(redis_prefix) as (b, _):
        await a.add_presence(CHANNEL, ALICE)
        await a.add_presence(CHANNEL, BOB)
        await a.remove_presence(CHANNEL, "c1")
        seen_from_b = await b.presence(CHANNEL)
    assert seen_from_b == {"c2": BOB}


async def test_presence_entries_of_a_node_that_died_expire(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix, presence_ttl=0.3) as (dying, _):
        await dying.add_presence(CHANNEL, ALICE)
    async with broker(redis_prefix) as (survivor, _):
        await asyncio.sleep(0.5)
        assert await survivor.presence(CHANNEL) == {}


async def test_presence_entries_of_a_living_node_are_renewed(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix, presence_ttl=0.3) as (a, _):
        await a.add_presence(CHANNEL, ALICE)
        await asyncio.sleep(0.7)
        assert await a.presence(CHANNEL) == {"c1": ALICE}


async def test_join_and_leave_events_reach_every_node(
    redis_prefix: str,
) -> None:
    async with broker(redis_prefix) as (a, got), broker(redis_prefix) as (b, _):
        a.set_join_leave_handler(got.join_leave)
        await a.subscribe(CHANNEL)
        await b.publish_join_leave(CHANNEL, JOIN, ALICE)
        await b.publish(CHANNEL, b"1", HISTORY)
        await b.publish_join_leave(CHANNEL, LEAVE, ALICE)
        await got.wait_for(lambda: len(got.events) == 2)
    assert got.events == [(CHANNEL, JOIN, ALICE), (CHANNEL, LEAVE, ALICE)]
    assert got.offsets() == [1]


async def test_a_broadcast_over_redis_answers_each_channel_in_order(
    redis_prefix: str,
) -> None:
    # Redis publishes wait on the network, so a broadcast runs them together;
    # the answers still come back in the order of the channels.
    from exporthub.realtime import ServerAPI

    options = ChannelOptions(history=HISTORY)
    config = NodeConfig(ping_interval=0, namespaces={"exports": options})
    node = Node(config, SECRET, broker=RedisBroker(REDIS_URL, prefix=redis_prefix))
    await node.start()
    try:
        assert node.broker.waits is True
        api = ServerAPI(node, "key")
        await node.publish("exports:u2", {"first": True})
        reply = await api.call(
            "broadcast",
            {"channels": ["exports:u1", "exports:u2", "nowhere:1"], "data": {"n": 1}},
        )
        epochs = [
            (await node.broker.history(ch, limit=0)).position.epoch
            for ch in ("exports:u1", "exports:u2")
        ]
    finally:
        await node.shutdown()
    assert reply == {
        "result": {
            "responses": [
                {"result": {"offset": 1, "epoch": epochs[0]}},
                {"result": {"offset": 2, "epoch": epochs[1]}},
                {"error": {"code": 102, "message": "unknown channel"}},
            ]
        }
    }
