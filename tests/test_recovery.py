"""History, positions and recovery in the channel server, with the memory
broker and a recording transport in place of the WebSocket."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from exporthub.realtime import ChannelOptions, HistoryOptions, Node, NodeConfig
from exporthub.realtime.broker import StreamPosition
from exporthub.realtime.broker.memory import MemoryBroker
from exporthub.realtime.protocol import Publication
from exporthub.realtime.session import Session, State
from exporthub.realtime.tokens import issue
from test_session import SECRET, RecordingTransport, allow_own_jobs, namespace

HISTORY = HistoryOptions(size=3, ttl=60)


def make_node(broker: MemoryBroker | None = None, ttl: float = 60) -> Node:
    history = ChannelOptions(history=HistoryOptions(size=HISTORY.size, ttl=ttl))
    return Node(
        NodeConfig(
            ping_interval=0,
            namespaces={"exports": history, "user": ChannelOptions(), "job": history},
            namespace_of=namespace,
        ),
        SECRET,
        broker=broker,
        can_subscribe=allow_own_jobs,
    )


@pytest.fixture
async def node():
    node = make_node()
    await node.start()
    yield node
    await node.shutdown()


async def connect(
    node: Node, subs: dict | None = None, channels: list[str] | None = None
) -> tuple[Session, RecordingTransport, dict]:
    transport = RecordingTransport()
    session = Session(node, transport)
    token = issue(SECRET, "u1", ttl=60, channels=channels or ["exports:u1"])
    command = {"id": 1, "connect": {"token": token, "subs": subs or {}}}
    await session.handle_frame(orjson.dumps(command))
    reply = transport.sent[0] if transport.sent else {}
    transport.sent.clear()
    return session, transport, reply


def pushed(transport: RecordingTransport) -> list[tuple[int, dict]]:
    return [
        (m["push"]["pub"].get("offset", 0), m["push"]["pub"]["data"])
        for m in transport.sent
        if "pub" in m.get("push", {})
    ]


async def test_a_publication_after_a_gap_in_offsets_disconnects_with_insufficient_state(
    node: Node,
) -> None:
    _, transport, _ = await connect(node)
    position = await node.publish("exports:u1", {"n": 1})
    node.hub.broadcast(
        "exports:u1", Publication(b'{"n":3}', position.offset + 2, 0, position.epoch)
    )
    assert pushed(transport) == [(1, {"n": 1})]
    assert transport.closed == (3010, "insufficient state: exports:u1")


async def test_a_publication_of_a_restarted_stream_disconnects_with_insufficient_state(
    node: Node,
) -> None:
    _, transport, _ = await connect(node)
    await node.publish("exports:u1", {"n": 1})
    node.hub.broadcast("exports:u1", Publication(b'{"n":1}', 2, 0, "another"))
    assert pushed(transport) == [(1, {"n": 1})]
    assert transport.closed == (3010, "insufficient state: exports:u1")


async def test_a_publication_delivered_again_is_not_sent_twice(node: Node) -> None:
    _, transport, _ = await connect(node)
    position = await node.publish("exports:u1", {"n": 1})
    node.hub.broadcast(
        "exports:u1", Publication(b'{"n":1}', position.offset, 0, position.epoch)
    )
    assert pushed(transport) == [(1, {"n": 1})]
    assert transport.closed is None


async def test_recovery_past_the_end_of_a_trimmed_history_says_recovered_false(
    node: Node,
) -> None:
    first = await node.publish("exports:u1", {"n": 1})
    for n in range(2, 6):
        await node.publish("exports:u1", {"n": n})
    subs = {"exports:u1": {"recover": True, "offset": 1, "epoch": first.epoch}}
    _, _, reply = await connect(node, subs)
    assert reply["connect"]["subs"]["exports:u1"] == {
        "recoverable": True,
        "positioned": True,
        "was_recovering": True,
        "recovered": False,
        "epoch": first.epoch,
        "offset": 5,
    }


async def test_recovery_after_the_history_expired_says_recovered_false() -> None:
    node = make_node(ttl=0.05)
    await node.start()
    try:
        first = await node.publish("exports:u1", {"n": 1})
        await node.publish("exports:u1", {"n": 2})
        await asyncio.sleep(0.1)
        subs = {"exports:u1": {"recover": True, "offset": 1, "epoch": first.epoch}}
        _, _, reply = await connect(node, subs)
    finally:
        await node.shutdown()
    result = reply["connect"]["subs"]["exports:u1"]
    assert (result["recovered"], result["epoch"], result["offset"]) == (
        False,
        first.epoch,
        2,
    )


async def test_recovery_at_the_top_of_an_expired_history_says_recovered_true() -> None:
    node = make_node(ttl=0.05)
    await node.start()
    try:
        top = await node.publish("exports:u1", {"n": 1})
        await asyncio.sleep(0.1)
        subs = {"exports:u1": {"recover": True, "offset": 1, "epoch": top.epoch}}
        _, _, reply = await connect(node, subs)
    finally:
        await node.shutdown()
    assert reply["connect"]["subs"]["exports:u1"]["recovered"] is True


async def test_a_quiet_channel_goes_on_with_its_epoch_after_its_history_expired() -> (
    None
):
    node = make_node(ttl=0.05)
    await node.start()
    try:
        _, transport, _ = await connect(node)
        first = await node.publish("exports:u1", {"n": 1})
        await asyncio.sleep(0.1)
        second = await node.publish("exports:u1", {"n": 2})
    finally:
        await node.shutdown()
    assert (second.epoch, second.offset) == (first.epoch, 2)
    assert pushed(transport) == [(1, {"n": 1}), (2, {"n": 2})]


async def test_a_channel_unused_for_longer_than_the_meta_ttl_starts_a_new_epoch() -> (
    None
):
    broker = MemoryBroker(meta_ttl=0.05)
    first = await broker.publish("exports:u1", b"1", HistoryOptions(size=3, ttl=0.01))
    await asyncio.sleep(0.1)
    second = await broker.publish("exports:u1", b"2", HistoryOptions(size=3, ttl=0.01))
    assert second.offset == 1
    assert second.epoch != first.epoch


async def test_a_client_side_subscription_recovers_exactly_the_missed_publications(
    node: Node,
) -> None:
    channel = "export.u1-job.job"
    first = await node.publish(channel, {"n": 1})
    await node.publish(channel, {"n": 2})
    await node.publish(channel, {"n": 3})
    session, transport, _ = await connect(node, channels=[])
    request = {"channel": channel, "recover": True, "offset": 1, "epoch": first.epoch}
    await session.handle_frame(orjson.dumps({"id": 2, "subscribe": request}))
    await node.publish(channel, {"n": 4})
    [reply, *_] = transport.sent
    assert reply["subscribe"] == {
        "recoverable": True,
        "positioned": True,
        "was_recovering": True,
        "recovered": True,
        "epoch": first.epoch,
        "offset": 1,
        "publications": [
            {"data": {"n": 2}, "offset": 2},
            {"data": {"n": 3}, "offset": 3},
        ],
    }
    assert pushed(transport) == [(4, {"n": 4})]


async def test_history_returns_the_publications_after_a_position(node: Node) -> None:
    first = await node.publish("exports:u1", {"n": 1})
    await node.publish("exports:u1", {"n": 2})
    await node.publish("exports:u1", {"n": 3})
    session, transport, _ = await connect(node)
    since = {"offset": 1, "epoch": first.epoch}
    command = {"id": 2, "history": {"channel": "exports:u1", "since": since}}
    await session.handle_frame(orjson.dumps(command))
    assert transport.sent == [
        {
            "id": 2,
            "history": {
                "publications": [
                    {"data": {"n": 2}, "offset": 2},
                    {"data": {"n": 3}, "offset": 3},
                ],
                "epoch": first.epoch,
                "offset": 3,
            },
        }
    ]


async def test_history_with_limit_minus_one_returns_the_whole_history(
    node: Node,
) -> None:
    await node.publish("exports:u1", {"n": 1})
    position = await node.publish("exports:u1", {"n": 2})
    session, transport, _ = await connect(node)
    command = {"id": 2, "history": {"channel": "exports:u1", "limit": -1}}
    await session.handle_frame(orjson.dumps(command))
    assert transport.sent == [
        {
            "id": 2,
            "history": {
                "publications": [
                    {"data": {"n": 1}, "offset": 1},
                    {"data": {"n": 2}, "offset": 2},
                ],
                "epoch": position.epoch,
                "offset": 2,
            },
        }
    ]


async def test_history_since_a_position_of_another_epoch_is_unrecoverable(
    node: Node,
) -> None:
    await node.publish("exports:u1", {"n": 1})
    session, transport, _ = await connect(node)
    since = {"offset": 1, "epoch": "stale"}
    command = {"id": 2, "history": {"channel": "exports:u1", "since": since}}
    await session.handle_frame(orjson.dumps(command))
    assert transport.sent == [
        {"id": 2, "error": {"code": 112, "message": "unrecoverable position"}}
    ]


async def test_history_of_a_channel_the_client_may_not_read_is_permission_denied(
    node: Node,
) -> None:
    await node.publish("exports:u2", {"n": 1})
    session, transport, _ = await connect(node)
    command = {"id": 2, "history": {"channel": "exports:u2", "limit": 10}}
    await session.handle_frame(orjson.dumps(command))
    assert transport.sent == [
        {"id": 2, "error": {"code": 103, "message": "permission denied"}}
    ]


async def test_draining_disconnects_every_client_with_shutdown(node: Node) -> None:
    _, first, _ = await connect(node)
    _, second, _ = await connect(node)
    node.drain()
    assert (first.closed, second.closed) == ((3001, "shutdown"), (3001, "shutdown"))
    assert node.connection_count == 0


async def test_a_draining_node_refuses_connect_with_shutdown(node: Node) -> None:
    node.drain()
    session, transport, reply = await connect(node)
    assert reply == {}
    assert transport.closed == (3001, "shutdown")
    assert session.state is State.CLOSED


class GatedBroker(MemoryBroker):
    """A memory broker whose subscriptions take effect when the gate opens,
    as a remote broker's do once the remote confirms them."""

    waits = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        await self.gate.wait()


async def test_a_second_subscriber_waits_for_the_broker_subscription_of_the_first() -> (
    None
):
    broker = GatedBroker()
    node = make_node(broker)
    await node.start()
    try:
        first = asyncio.ensure_future(connect(node))
        second = asyncio.ensure_future(connect(node))
        await asyncio.sleep(0.05)
        waiting = (first.done(), second.done())
        broker.gate.set()
        await asyncio.gather(first, second)
    finally:
        await node.shutdown()
    assert waiting == (False, False)


async def test_publications_reach_the_node_with_their_offset_and_epoch() -> None:
    received: list[Publication] = []
    broker = MemoryBroker()
    await broker.start(lambda channel, pub: received.append(pub))
    position = await broker.publish("exports:u1", b"1", HISTORY)
    assert position == StreamPosition(1, received[0].epoch)
    assert received == [Publication(b"1", 1, received[0].time_ms, position.epoch)]


@pytest.mark.xfail(
    strict=True,
    reason="history lives in this process only; it is lost on restart",
)
async def test_the_memory_brokers_history_outlives_a_restart() -> None:
    before = MemoryBroker()
    await before.publish("exports:u1", b"1", HISTORY)
    after = MemoryBroker()
    result = await after.history("exports:u1")
    assert [p.data for p in result.publications] == [b"1"]


async def test_the_epoch_read_before_the_first_publication_is_the_streams() -> None:
    broker = MemoryBroker()
    before = await broker.history("exports:u1", limit=0)
    again = await broker.history("exports:u1", limit=0)
    assert before == again
    assert before.position.offset == 0
    first = await broker.publish("exports:u1", b"1", HISTORY)
    assert first == StreamPosition(1, before.position.epoch)
    after = await broker.history("exports:u1")
    assert after.position == first
    assert [p.data for p in after.publications] == [b"1"]


async def test_a_channel_only_read_is_forgotten_after_the_meta_ttl() -> None:
    broker = MemoryBroker(meta_ttl=0.05)
    before = await broker.history("exports:u1", limit=0)
    await asyncio.sleep(0.1)
    after = await broker.history("exports:u1", limit=0)
    assert after.position.offset == 0
    assert after.position.epoch != before.position.epoch
    published = await broker.publish("exports:u1", b"1", HISTORY)
    assert published == StreamPosition(1, after.position.epoch)


async def test_reading_keeps_a_quiet_stream_and_its_position() -> None:
    broker = MemoryBroker(meta_ttl=0.2)
    first = await broker.publish("exports:u1", b"1", HistoryOptions(size=3, ttl=0.01))
    for _ in range(3):
        await asyncio.sleep(0.1)
        read = await broker.history("exports:u1", limit=0)
        assert read.position == first
    second = await broker.publish("exports:u1", b"2", HISTORY)
    assert second == StreamPosition(2, first.epoch)


async def test_a_stream_forgotten_after_publications_starts_a_new_epoch_on_read() -> (
    None
):
    broker = MemoryBroker(meta_ttl=0.05)
    first = await broker.publish("exports:u1", b"1", HistoryOptions(size=3, ttl=0.01))
    await asyncio.sleep(0.1)
    read = await broker.history("exports:u1", limit=0)
    assert read.position.offset == 0
    assert read.position.epoch != first.epoch
    again = await broker.publish("exports:u1", b"2", HISTORY)
    assert again == StreamPosition(1, read.position.epoch)
