"""Presence and join/leave, seen by real centrifuge-python clients of the
embedding example running as a real process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from centrifuge import Client, ClientInfo, ReplyError

from example_process import (
    Events,
    ExampleServer,
    connected_client,
    eventually,
    run_example,
    subscribed_client,
)
from exporthub.realtime import (
    ChannelOptions,
    Node,
    NodeConfig,
    ServerAPI,
    issue_token,
)
from exporthub.realtime.broker import Broker
from exporthub.realtime.broker.memory import MemoryBroker
from exporthub.realtime.session import Session

API_KEY = "presence-test-api-key"
SECRET = "presence-test-token-secret-of-32-bytes"


@pytest.fixture(scope="module")
def server() -> Iterator[ExampleServer]:
    with run_example(secret=SECRET, api_key=API_KEY) as running:
        yield running


@pytest.fixture
async def api(server: ExampleServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.api_url, headers={"X-API-Key": API_KEY}, trust_env=False
    ) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def info_of(events: Events, user: str) -> ClientInfo:
    """The ClientInfo that presence and join/leave show for a connection."""
    client = events.of("connected")[0].client
    return ClientInfo(client=client, user=user, conn_info=None, chan_info=None)


async def publish_marker(api: httpx.AsyncClient, channel: str) -> None:
    """Publish a marker: once a subscriber has it, every push sent to it
    before has arrived too, which shows that an event was not sent."""
    response = await api.post("/publish", json={"channel": channel, "data": "marker"})
    assert "result" in response.json()


def is_marker(ctx: Any) -> bool:
    return ctx.pub.data == "marker"


# -- presence ---------------------------------------------------------------


async def test_presence_lists_every_subscribed_connection(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with (
        subscribed_client(server, "alice", channel) as (alice, sub, _),
        subscribed_client(server, "bob", channel) as (bob, _, _),
    ):
        result = await sub.presence()
    assert result.clients == {
        info.client: info
        for info in (info_of(alice.events, "alice"), info_of(bob.events, "bob"))
    }


async def test_presence_stats_counts_connections_and_users(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with (
        subscribed_client(server, "alice", channel) as (_, sub, _),
        subscribed_client(server, "alice", channel),
        subscribed_client(server, "bob", channel),
    ):
        stats = await sub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (3, 2)


async def test_presence_of_a_channel_the_client_may_subscribe_to(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with (
        subscribed_client(server, "bob", channel) as (bob, _, _),
        connected_client(server, "alice") as (alice, _),
    ):
        result = await alice.presence(channel)
    assert result.clients == {
        info.client: info for info in [info_of(bob.events, "bob")]
    }


async def test_presence_of_a_channel_the_client_may_not_subscribe_to_is_error_103(
    server: ExampleServer,
) -> None:
    async with connected_client(server, "alice") as (alice, _):
        with pytest.raises(ReplyError) as caught:
            await alice.presence("personal:bob")
    assert (caught.value.code, caught.value.message) == (103, "permission denied")


async def test_presence_where_not_enabled_is_error_108(server: ExampleServer) -> None:
    async with subscribed_client(server, "alice", unique("news:")) as (_, sub, _):
        with pytest.raises(ReplyError) as caught:
            await sub.presence()
    assert (caught.value.code, caught.value.message) == (108, "not available")


async def test_presence_stats_where_not_enabled_is_error_108(
    server: ExampleServer,
) -> None:
    async with subscribed_client(server, "alice", unique("news:")) as (_, sub, _):
        with pytest.raises(ReplyError) as caught:
            await sub.presence_stats()
    assert caught.value.code == 108


async def test_server_side_subscription_from_the_example_token_is_in_presence(
    server: ExampleServer,
) -> None:
    user = unique("user-")
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as http:
        token = (await http.post("/token", json={"user": user})).json()["token"]
    events = Events()
    client = Client(server.ws_url, events=events, token=token, proxy=None)
    await client.connect()
    try:
        subscribed = await events.next("subscribed")
        result = await client.presence(f"personal:{user}")
    finally:
        await client.disconnect()
    assert subscribed.channel == f"personal:{user}"
    assert result.clients == {info.client: info for info in [info_of(events, user)]}


async def test_presence_forgets_a_connection_that_unsubscribes(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with (
        subscribed_client(server, "alice", channel) as (alice, sub, _),
        subscribed_client(server, "bob", channel) as (_, leaving, _),
    ):
        await leaving.unsubscribe()

        async def only_alice() -> bool:
            return len((await sub.presence()).clients) == 1

        await eventually(only_alice)
        result = await sub.presence()
    assert result.clients == {
        info.client: info for info in [info_of(alice.events, "alice")]
    }


# -- join / leave -----------------------------------------------------------


async def test_join_is_pushed_to_a_subscriber_that_asked_for_it(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with subscribed_client(server, "alice", channel, join_leave=True) as (
        _,
        _,
        events,
    ):
        async with subscribed_client(server, "bob", channel) as (bob, _, _):
            joined = await events.next("join", lambda c: c.info.user == "bob")
            bob_info = info_of(bob.events, "bob")
    assert joined.info == bob_info


async def test_subscriber_that_asked_for_join_leave_gets_its_own_join(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with subscribed_client(server, "alice", channel, join_leave=True) as (
        alice,
        _,
        events,
    ):
        joined = await events.next("join")
        alice_info = info_of(alice.events, "alice")
    assert joined.info == alice_info


async def test_leave_is_pushed_when_a_subscriber_unsubscribes(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with subscribed_client(server, "alice", channel, join_leave=True) as (
        _,
        _,
        events,
    ):
        async with subscribed_client(server, "bob", channel) as (bob, leaving, _):
            bob_info = info_of(bob.events, "bob")
            await leaving.unsubscribe()
            left = await events.next("leave")
    assert left.info == bob_info


async def test_leave_is_pushed_when_a_subscriber_disconnects(
    server: ExampleServer,
) -> None:
    channel = unique("room:")
    async with subscribed_client(server, "alice", channel, join_leave=True) as (
        _,
        _,
        events,
    ):
        async with subscribed_client(server, "bob", channel) as (bob, _, _):
            bob_info = info_of(bob.events, "bob")
        left = await events.next("leave")
    assert left.info == bob_info


async def test_no_join_leave_is_pushed_to_a_subscriber_that_did_not_ask(
    server: ExampleServer, api: httpx.AsyncClient
) -> None:
    channel = unique("room:")
    async with subscribed_client(server, "alice", channel) as (_, _, events):
        async with subscribed_client(server, "bob", channel):
            pass
        await publish_marker(api, channel)
        await events.next("publication", is_marker)
    assert (events.of("join"), events.of("leave")) == ([], [])


async def test_no_join_leave_where_the_namespace_does_not_emit_them(
    server: ExampleServer, api: httpx.AsyncClient
) -> None:
    channel = unique("news:")
    async with subscribed_client(server, "alice", channel, join_leave=True) as (
        _,
        _,
        events,
    ):
        async with subscribed_client(server, "bob", channel):
            pass
        await publish_marker(api, channel)
        await events.next("publication", is_marker)
    assert (events.of("join"), events.of("leave")) == ([], [])


async def test_forced_join_is_pushed_to_a_server_side_subscriber(
    server: ExampleServer,
) -> None:
    channel = unique("lobby:")
    async with connected_client(server, "alice", [channel]) as (_, events):
        async with subscribed_client(server, "bob", channel) as (bob, _, _):
            joined = await events.next("join", lambda c: c.info.user == "bob")
            bob_info = info_of(bob.events, "bob")
    assert (joined.channel, joined.info) == (channel, bob_info)


async def test_forced_leave_is_pushed_to_a_subscriber_that_did_not_ask(
    server: ExampleServer,
) -> None:
    channel = unique("lobby:")
    async with subscribed_client(server, "alice", channel) as (_, _, events):
        async with connected_client(server, "bob", [channel]) as (_, bob_events):
            bob_info = info_of(bob_events, "bob")
        left = await events.next("leave")
    assert left.info == bob_info


async def test_join_of_a_server_api_subscription_carries_its_info(
    server: ExampleServer, api: httpx.AsyncClient
) -> None:
    channel, user = unique("room:"), unique("user-")
    async with subscribed_client(server, "alice", channel, join_leave=True) as (
        _,
        _,
        events,
    ):
        async with connected_client(server, user) as (_, joining):
            response = await api.post(
                "/subscribe",
                json={"user": user, "channel": channel, "info": {"seat": 7}},
            )
            joined = await events.next("join", lambda c: c.info.user == user)
            client = joining.of("connected")[0].client
    assert response.json() == {"result": {}}
    assert joined.info == ClientInfo(
        client=client, user=user, conn_info=None, chan_info={"seat": 7}
    )


# -- brokers without presence -----------------------------------------------


class BrokerWithoutPresence(MemoryBroker):
    """A broker written before presence existed: the Broker defaults."""

    set_join_leave_handler = Broker.set_join_leave_handler
    publish_join_leave = Broker.publish_join_leave
    add_presence = Broker.add_presence
    remove_presence = Broker.remove_presence
    presence = Broker.presence
    presence_stats = Broker.presence_stats


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def write(self, message: bytes) -> None:
        self.sent.append(orjson.loads(message))

    def close(self, code: int, reason: str) -> None:
        self.sent.append({"closed": code})


@pytest.fixture
async def node_without_presence() -> AsyncIterator[Node]:
    config = NodeConfig(
        namespaces={"room": ChannelOptions(presence=True, join_leave=True)}
    )
    node = Node(config, SECRET, broker=BrokerWithoutPresence())
    await node.start()
    try:
        yield node
    finally:
        await node.shutdown()


async def connected_session(
    node: Node, channels: list[str]
) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    session = Session(node, transport)
    token = issue_token(SECRET, "alice", ttl=60, channels=channels)
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    return session, transport


async def test_subscription_works_when_the_broker_keeps_no_presence(
    node_without_presence: Node,
) -> None:
    _, transport = await connected_session(node_without_presence, ["room:1"])
    await node_without_presence.publish("room:1", {"n": 1})
    assert transport.sent[-1] == {
        "push": {"channel": "room:1", "pub": {"data": {"n": 1}}}
    }


async def test_presence_command_is_not_available_when_the_broker_keeps_none(
    node_without_presence: Node,
) -> None:
    session, transport = await connected_session(node_without_presence, ["room:1"])
    await session.handle_frame(
        orjson.dumps({"id": 2, "presence": {"channel": "room:1"}})
    )
    assert transport.sent[-1] == {
        "id": 2,
        "error": {"code": 108, "message": "not available"},
    }


async def test_presence_api_is_not_available_when_the_broker_keeps_none(
    node_without_presence: Node,
) -> None:
    api = ServerAPI(node_without_presence, API_KEY)
    reply = await api.call("presence_stats", {"channel": "room:1"})
    assert reply == {"error": {"code": 108, "message": "not available"}}
