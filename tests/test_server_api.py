"""The server API, driven by the unmodified ``cent`` client (sync and async)
against the embedding example running as a real process."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import requests
from cent import (
    AsyncClient,
    BatchRequest,
    BoolValue,
    BroadcastRequest,
    ChannelOptionsOverride,
    ChannelsRequest,
    Client,
    ClientInfo,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    HistoryResult,
    InfoRequest,
    PresenceRequest,
    PresenceResult,
    PresenceStatsRequest,
    PresenceStatsResult,
    Publication,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.exceptions import (
    CentApiResponseError,
    CentTransportError,
    CentUnauthorizedError,
)

from example_process import (
    ExampleServer,
    connected_client,
    eventually,
    run_example,
    subscribed_client,
)

API_KEY = "test-api-key"
SECRET = "test-token-secret-of-at-least-32-bytes"
BODY_LIMIT = 1024 * 1024
"""The server API's default body limit, which the example keeps."""


@pytest.fixture(scope="module")
def server() -> Iterator[ExampleServer]:
    with run_example(secret=SECRET, api_key=API_KEY) as running:
        yield running


class Api:
    """A ``cent`` client, sync or async, behind the same awaitable methods:
    ``await api.publish(PublishRequest(...))``. The sync one runs in a thread
    so that clients in the test's event loop keep receiving meanwhile."""

    def __init__(self, kind: str, url: str, key: str) -> None:
        self.kind = kind
        if kind == "sync":
            session = requests.Session()
            session.trust_env = False
            self._client: Any = Client(url, key, session=session)
        else:
            self._client = AsyncClient(url, key, session=aiohttp.ClientSession())

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def call(request: Any) -> Any:
            if self.kind == "sync":
                return await asyncio.to_thread(method, request)
            return await method(request)

        return call

    async def close(self) -> None:
        if self.kind == "sync":
            self._client._session.close()
        else:
            await self._client._session.close()


@pytest.fixture(params=["sync", "async"])
async def api(
    request: pytest.FixtureRequest, server: ExampleServer
) -> AsyncIterator[Api]:
    client = Api(request.param, server.api_url, API_KEY)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def http(server: ExampleServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, trust_env=False) as client:
        yield client


def unique(prefix: str) -> str:
    """A name no other test uses: tests share one server."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def client_id(events: Any) -> str:
    return events.of("connected")[0].client


# -- publish ----------------------------------------------------------------


async def test_publish_without_history_returns_an_empty_position(api: Api) -> None:
    result = await api.publish(PublishRequest(channel=unique("room:"), data={"n": 1}))
    assert result == PublishResult(offset=0, epoch="")


async def test_publish_with_history_returns_offset_and_epoch(api: Api) -> None:
    channel = unique("news:")
    first = await api.publish(PublishRequest(channel=channel, data=1))
    second = await api.publish(PublishRequest(channel=channel, data=2))
    history = await api.history(HistoryRequest(channel=channel))
    assert history.epoch != ""
    assert [first, second] == [
        PublishResult(offset=1, epoch=history.epoch),
        PublishResult(offset=2, epoch=history.epoch),
    ]


async def test_publish_reaches_a_client_side_subscriber(
    server: ExampleServer, api: Api
) -> None:
    channel = unique("news:")
    async with subscribed_client(server, "alice", channel) as (_, _, events):
        await api.publish(PublishRequest(channel=channel, data={"text": "hi"}))
        received = await events.next("publication")
    assert (received.pub.data, received.pub.offset) == ({"text": "hi"}, 1)


async def test_publish_b64data_delivers_the_decoded_json(
    server: ExampleServer, api: Api
) -> None:
    channel = unique("room:")
    encoded = base64.b64encode(b'{"raw": [1, 2]}').decode()
    async with subscribed_client(server, "alice", channel) as (_, _, events):
        await api.publish(PublishRequest(channel=channel, data=None, b64data=encoded))
        received = await events.next("publication")
    assert received.pub.data == {"raw": [1, 2]}


async def test_publish_b64data_that_is_not_json_is_bad_request(api: Api) -> None:
    encoded = base64.b64encode(b"\x00\xff").decode()
    request = PublishRequest(channel=unique("room:"), data=None, b64data=encoded)
    with pytest.raises(CentApiResponseError) as caught:
        await api.publish(request)
    assert (caught.value.code, caught.value.message) == (107, "bad request")


async def test_publish_with_skip_history_keeps_it_out_of_history(api: Api) -> None:
    channel = unique("news:")
    result = await api.publish(
        PublishRequest(channel=channel, data=1, skip_history=True)
    )
    history = await api.history(HistoryRequest(channel=channel, limit=-1))
    assert result == PublishResult(offset=0, epoch="")
    assert (history.publications, history.offset) == ([], 0)


async def test_publish_with_tags_is_accepted(api: Api) -> None:
    request = PublishRequest(channel=unique("news:"), data=1, tags={"kind": "test"})
    result = await api.publish(request)
    assert result.offset == 1


async def test_publish_retried_with_its_idempotency_key_is_delivered_once(
    server: ExampleServer, api: Api
) -> None:
    channel = unique("news:")
    async with subscribed_client(server, "alice", channel) as (_, _, events):
        first = await api.publish(
            PublishRequest(channel=channel, data="once", idempotency_key="k1")
        )
        retry = await api.publish(
            PublishRequest(channel=channel, data="once", idempotency_key="k1")
        )
        await api.publish(PublishRequest(channel=channel, data="marker"))
        await events.next("publication", lambda ctx: ctx.pub.data == "marker")
    assert retry == first
    assert [ctx.pub.data for ctx in events.of("publication")] == ["once", "marker"]


async def test_idempotency_key_is_per_channel(api: Api) -> None:
    first, second = unique("news:"), unique("news:")
    await api.publish(PublishRequest(channel=first, data=1, idempotency_key="same"))
    await api.publish(PublishRequest(channel=second, data=1, idempotency_key="same"))
    history = await api.history(HistoryRequest(channel=second, limit=-1))
    assert [p.data for p in history.publications] == [1]


async def test_publish_to_unknown_namespace_is_error_102(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.publish(PublishRequest(channel="nowhere:1", data=1))
    assert (caught.value.code, caught.value.message) == (102, "unknown channel")


async def test_publish_without_channel_is_error_107(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.publish(PublishRequest(channel="", data=1))
    assert (caught.value.code, caught.value.message) == (107, "bad request")


# -- broadcast --------------------------------------------------------------


async def test_broadcast_answers_for_each_channel(api: Api) -> None:
    news, room = unique("news:"), unique("room:")
    result = await api.broadcast(
        BroadcastRequest(channels=[news, room, "nowhere:1", ""], data={"b": 1})
    )
    epoch = (await api.history(HistoryRequest(channel=news))).epoch
    assert [response.model_dump() for response in result.responses] == [
        {"error": None, "result": {"offset": 1, "epoch": epoch}},
        {"error": None, "result": {"offset": 0, "epoch": ""}},
        {"error": {"code": 102, "message": "unknown channel"}, "result": None},
        {"error": {"code": 107, "message": "bad request"}, "result": None},
    ]


async def test_broadcast_reaches_subscribers_of_every_channel(
    server: ExampleServer, api: Api
) -> None:
    first, second = unique("room:"), unique("news:")
    async with (
        subscribed_client(server, "alice", first) as (_, _, alice),
        subscribed_client(server, "bob", second) as (_, _, bob),
    ):
        await api.broadcast(BroadcastRequest(channels=[first, second], data="all"))
        received = [await events.next("publication") for events in (alice, bob)]
    assert [ctx.pub.data for ctx in received] == ["all", "all"]


async def test_broadcast_without_channels_is_error_107(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.broadcast(BroadcastRequest(channels=[], data=1))
    assert caught.value.code == 107


# -- subscribe / unsubscribe ------------------------------------------------


async def test_subscribe_subscribes_every_connection_of_the_user(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with (
        connected_client(server, user) as (_, first),
        connected_client(server, user) as (_, second),
    ):
        await api.subscribe(SubscribeRequest(user=user, channel=channel))
        await api.publish(PublishRequest(channel=channel, data="to both"))
        received = [await events.next("publication") for events in (first, second)]
    assert [(ctx.channel, ctx.pub.data) for ctx in received] == [
        (channel, "to both"),
        (channel, "to both"),
    ]


async def test_subscribe_sends_its_data_in_the_subscribe_push(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with connected_client(server, user) as (_, events):
        await api.subscribe(
            SubscribeRequest(user=user, channel=channel, data={"welcome": True})
        )
        subscribed = await events.next("subscribed", lambda c: c.channel == channel)
    assert subscribed.data == {"welcome": True}


async def test_subscribe_with_client_subscribes_only_that_connection(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with (
        connected_client(server, user) as (_, first),
        connected_client(server, user),
    ):
        target = client_id(first)
        await api.subscribe(SubscribeRequest(user=user, channel=channel, client=target))
        presence = await api.presence(PresenceRequest(channel=channel))
    assert presence == PresenceResult(
        presence={target: ClientInfo(user=user, client=target)}
    )


async def test_subscribe_info_is_shown_in_presence(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with connected_client(server, user) as (_, events):
        await api.subscribe(
            SubscribeRequest(user=user, channel=channel, info={"role": "moderator"})
        )
        presence = await api.presence(PresenceRequest(channel=channel))
    client = client_id(events)
    assert presence == PresenceResult(
        presence={
            client: ClientInfo(
                user=user, client=client, chan_info={"role": "moderator"}
            )
        }
    )


async def test_subscribe_override_can_keep_a_subscription_out_of_presence(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    override = ChannelOptionsOverride(presence=BoolValue(value=False))
    async with connected_client(server, user) as (_, events):
        await api.subscribe(
            SubscribeRequest(user=user, channel=channel, override=override)
        )
        await events.next("subscribed", lambda ctx: ctx.channel == channel)
        presence = await api.presence(PresenceRequest(channel=channel))
    assert presence == PresenceResult(presence={})


async def test_subscribe_to_unknown_namespace_is_error_102(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.subscribe(SubscribeRequest(user="alice", channel="nowhere:1"))
    assert caught.value.code == 102


async def test_unsubscribe_ends_a_server_side_subscription(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with connected_client(server, user, [channel]) as (_, events):
        await api.unsubscribe(UnsubscribeRequest(user=user, channel=channel))
        unsubscribed = await events.next("unsubscribed")
    assert unsubscribed.channel == channel


async def test_unsubscribe_ends_a_client_side_subscription(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with subscribed_client(server, user, channel) as (_, _, events):
        await api.unsubscribe(UnsubscribeRequest(user=user, channel=channel))
        unsubscribed = await events.next("unsubscribed")
    assert (unsubscribed.code, unsubscribed.reason) == (2000, "server unsubscribe")


async def test_unsubscribe_without_channel_ends_every_subscription(
    server: ExampleServer, api: Api
) -> None:
    user = unique("user-")
    first, second = unique("room:"), unique("room:")
    async with connected_client(server, user, [first, second]) as (_, events):
        await api.unsubscribe(UnsubscribeRequest(user=user, channel=""))
        ended = [(await events.next("unsubscribed")).channel for _ in range(2)]
    assert sorted(ended) == sorted([first, second])


# -- disconnect / refresh ---------------------------------------------------


async def test_disconnect_closes_with_force_disconnect_by_default(
    server: ExampleServer, api: Api
) -> None:
    user = unique("user-")
    async with connected_client(server, user) as (_, events):
        await api.disconnect(DisconnectRequest(user=user))
        disconnected = await events.next("disconnected")
    assert (disconnected.code, disconnected.reason) == (3503, "force disconnect")


async def test_disconnect_closes_with_the_given_code_and_reason(
    server: ExampleServer, api: Api
) -> None:
    user = unique("user-")
    async with connected_client(server, user) as (_, events):
        await api.disconnect(
            DisconnectRequest(user=user, disconnect=Disconnect(code=4500, reason="bye"))
        )
        disconnected = await events.next("disconnected")
    assert (disconnected.code, disconnected.reason) == (4500, "bye")


async def test_disconnect_keeps_whitelisted_connections(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with (
        connected_client(server, user, [channel]) as (_, kept),
        connected_client(server, user, [channel]) as (_, closed),
    ):
        await api.disconnect(DisconnectRequest(user=user, whitelist=[client_id(kept)]))
        await closed.next("disconnected")
        channels = await api.channels(ChannelsRequest(pattern=channel))
        kept_disconnects = kept.of("disconnected")
    assert channels.channels[channel].num_clients == 1
    assert kept_disconnects == []


async def test_disconnect_with_code_outside_websocket_range_is_error_107(
    api: Api,
) -> None:
    request = DisconnectRequest(user="alice", disconnect=Disconnect(code=1000))
    with pytest.raises(CentApiResponseError) as caught:
        await api.disconnect(request)
    assert caught.value.code == 107


async def test_refresh_expired_closes_the_connection_as_expired(
    server: ExampleServer, api: Api
) -> None:
    user = unique("user-")
    async with connected_client(server, user) as (_, events):
        await api.refresh(RefreshRequest(user=user, expired=True))
        closed = await events.next("connecting", lambda ctx: ctx.code == 3005)
    assert closed.reason == "connection expired"


async def test_refresh_expire_at_closes_the_connection_when_reached(
    server: ExampleServer, api: Api
) -> None:
    user = unique("user-")
    async with connected_client(server, user) as (_, events):
        await api.refresh(RefreshRequest(user=user, expire_at=int(time.time()) + 1))
        closed = await events.next("connecting", lambda ctx: ctx.code == 3005)
    assert closed.reason == "connection expired"


# -- presence ---------------------------------------------------------------


async def test_presence_lists_each_subscribed_connection(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with connected_client(server, user, [channel]) as (_, events):
        presence = await api.presence(PresenceRequest(channel=channel))
    client = client_id(events)
    assert presence == PresenceResult(
        presence={client: ClientInfo(user=user, client=client)}
    )


async def test_presence_stats_counts_connections_and_users(
    server: ExampleServer, api: Api
) -> None:
    user, other, channel = unique("user-"), unique("user-"), unique("room:")
    async with (
        connected_client(server, user, [channel]),
        connected_client(server, user, [channel]),
        connected_client(server, other, [channel]),
    ):
        stats = await api.presence_stats(PresenceStatsRequest(channel=channel))
    assert stats == PresenceStatsResult(num_clients=3, num_users=2)


async def test_presence_forgets_a_disconnected_connection(
    server: ExampleServer, api: Api
) -> None:
    user, channel = unique("user-"), unique("room:")
    async with connected_client(server, user, [channel]):
        pass

    async def empty() -> bool:
        stats = await api.presence_stats(PresenceStatsRequest(channel=channel))
        return stats.num_clients == 0

    await eventually(empty)
    presence = await api.presence(PresenceRequest(channel=channel))
    assert presence == PresenceResult(presence={})


async def test_presence_where_not_enabled_is_error_108(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.presence(PresenceRequest(channel=unique("news:")))
    assert (caught.value.code, caught.value.message) == (108, "not available")


async def test_presence_stats_where_not_enabled_is_error_108(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.presence_stats(PresenceStatsRequest(channel=unique("news:")))
    assert caught.value.code == 108


async def test_presence_of_unknown_namespace_is_error_102(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.presence(PresenceRequest(channel="nowhere:1"))
    assert caught.value.code == 102


# -- history ----------------------------------------------------------------


async def published(api: Api, channel: str, count: int) -> str:
    """Publish 1..count to ``channel``; returns its epoch."""
    for n in range(1, count + 1):
        result = await api.publish(PublishRequest(channel=channel, data=n))
    return result.epoch


async def test_history_returns_at_most_limit_publications(api: Api) -> None:
    channel = unique("news:")
    epoch = await published(api, channel, 3)
    history = await api.history(HistoryRequest(channel=channel, limit=2))
    assert history == HistoryResult(
        publications=[Publication(data=1, offset=1), Publication(data=2, offset=2)],
        offset=3,
        epoch=epoch,
    )


async def test_history_without_limit_returns_only_the_position(api: Api) -> None:
    channel = unique("news:")
    epoch = await published(api, channel, 2)
    history = await api.history(HistoryRequest(channel=channel))
    assert history == HistoryResult(publications=[], offset=2, epoch=epoch)


async def test_history_since_a_position_returns_what_follows(api: Api) -> None:
    channel = unique("news:")
    epoch = await published(api, channel, 3)
    since = StreamPosition(offset=1, epoch=epoch)
    history = await api.history(HistoryRequest(channel=channel, limit=-1, since=since))
    assert [(p.data, p.offset) for p in history.publications] == [(2, 2), (3, 3)]


async def test_history_reverse_returns_newest_first(api: Api) -> None:
    channel = unique("news:")
    await published(api, channel, 3)
    history = await api.history(HistoryRequest(channel=channel, limit=2, reverse=True))
    assert [p.offset for p in history.publications] == [3, 2]


async def test_history_since_another_epoch_is_error_112(api: Api) -> None:
    channel = unique("news:")
    await published(api, channel, 1)
    since = StreamPosition(offset=1, epoch="stale")
    with pytest.raises(CentApiResponseError) as caught:
        await api.history(HistoryRequest(channel=channel, limit=-1, since=since))
    assert (caught.value.code, caught.value.message) == (112, "unrecoverable position")


async def test_history_where_not_kept_is_error_108(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.history(HistoryRequest(channel=unique("room:"), limit=-1))
    assert caught.value.code == 108


async def test_history_remove_empties_history_and_keeps_offsets(api: Api) -> None:
    channel = unique("news:")
    epoch = await published(api, channel, 2)
    await api.history_remove(HistoryRemoveRequest(channel=channel))
    history = await api.history(HistoryRequest(channel=channel, limit=-1))
    after = await api.publish(PublishRequest(channel=channel, data=3))
    assert history == HistoryResult(publications=[], offset=2, epoch=epoch)
    assert after == PublishResult(offset=3, epoch=epoch)


async def test_history_remove_where_not_kept_is_error_108(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as caught:
        await api.history_remove(HistoryRemoveRequest(channel=unique("room:")))
    assert caught.value.code == 108


# -- channels / info --------------------------------------------------------


async def test_channels_lists_matching_channels_with_their_clients(
    server: ExampleServer, api: Api
) -> None:
    prefix = unique("room:")
    first, second = f"{prefix}-a", f"{prefix}-b"
    async with (
        connected_client(server, unique("user-"), [first, second]),
        connected_client(server, unique("user-"), [second]),
        connected_client(server, unique("user-"), [unique("room:")]),
    ):
        result = await api.channels(ChannelsRequest(pattern=f"{prefix}-*"))
    counts = {name: info.num_clients for name, info in result.channels.items()}
    assert counts == {first: 1, second: 2}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_info_describes_the_node(kind: str) -> None:
    with run_example(secret=SECRET, api_key=API_KEY) as fresh:
        api = Api(kind, fresh.api_url, API_KEY)
        try:
            async with connected_client(fresh, "alice", ["personal:alice"]):
                result = await api.info(InfoRequest())
        finally:
            await api.close()
    [node] = result.nodes
    assert uuid.UUID(node.uid).version == 4
    assert (
        node.name,
        node.version,
        node.num_clients,
        node.num_users,
        node.num_channels,
        node.num_subs,
    ) == (socket.gethostname(), "exporthub", 1, 1, 1, 1)


# -- batch ------------------------------------------------------------------


async def test_batch_replies_to_each_command_in_order(api: Api) -> None:
    channel = unique("news:")
    result = await api.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel=channel, data=1),
                PublishRequest(channel=channel, data=2),
                HistoryRequest(channel=channel, limit=-1),
            ]
        )
    )
    epoch = result.replies[2].epoch
    assert result.replies == [
        PublishResult(offset=1, epoch=epoch),
        PublishResult(offset=2, epoch=epoch),
        HistoryResult(
            publications=[Publication(data=1, offset=1), Publication(data=2, offset=2)],
            offset=2,
            epoch=epoch,
        ),
    ]


async def test_parallel_batch_runs_every_command(api: Api) -> None:
    channels = [unique("news:") for _ in range(3)]
    result = await api.batch(
        BatchRequest(
            requests=[PublishRequest(channel=ch, data=ch) for ch in channels],
            parallel=True,
        )
    )
    assert [reply.offset for reply in result.replies] == [1, 1, 1]


def test_batch_replies_with_an_error_for_each_failed_command(
    http: httpx.Client,
) -> None:
    commands = [
        {"publish": {"channel": "nowhere:1", "data": 1}},
        {"no_such_method": {}},
        {"publish": "not an object"},
        {"presence_stats": {"channel": unique("room:")}},
    ]
    response = http.post(
        "/api/batch", json={"commands": commands}, headers={"X-API-Key": API_KEY}
    )
    assert (response.status_code, response.json()) == (
        200,
        {
            "replies": [
                {"error": {"code": 102, "message": "unknown channel"}},
                {"error": {"code": 104, "message": "not found"}},
                {"error": {"code": 107, "message": "bad request"}},
                {"presence_stats": {"num_clients": 0, "num_users": 0}},
            ]
        },
    )


# -- HTTP level -------------------------------------------------------------


async def test_wrong_api_key_raises_unauthorized(server: ExampleServer) -> None:
    for kind in ("sync", "async"):
        api = Api(kind, server.api_url, "wrong-key")
        try:
            with pytest.raises(CentUnauthorizedError):
                await api.info(InfoRequest())
        finally:
            await api.close()


def test_missing_api_key_is_http_401(http: httpx.Client) -> None:
    response = http.post("/api/info", json={})
    assert (response.status_code, response.json()) == (
        401,
        {"error": {"code": 101, "message": "unauthorized"}},
    )


def test_authorization_header_with_apikey_scheme_is_accepted(
    http: httpx.Client,
) -> None:
    response = http.post(
        "/api/presence_stats",
        json={"channel": unique("room:")},
        headers={"Authorization": f"apikey {API_KEY}"},
    )
    assert (response.status_code, response.json()) == (
        200,
        {"result": {"num_clients": 0, "num_users": 0}},
    )


def test_malformed_body_is_http_400(http: httpx.Client) -> None:
    response = http.post(
        "/api/publish", content=b'{"channel": ', headers={"X-API-Key": API_KEY}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": {"code": 107, "message": "bad request"}},
    )


def test_field_of_wrong_type_is_http_400(http: httpx.Client) -> None:
    response = http.post(
        "/api/publish",
        json={"channel": 5, "data": 1},
        headers={"X-API-Key": API_KEY},
    )
    assert response.status_code == 400


def test_unknown_method_is_http_404(http: httpx.Client) -> None:
    response = http.post("/api/no_such_method", json={}, headers={"X-API-Key": API_KEY})
    assert (response.status_code, response.json()) == (
        404,
        {"error": {"code": 104, "message": "not found"}},
    )


def test_body_over_the_limit_is_http_413(http: httpx.Client) -> None:
    body = b'{"channel": "news:big", "data": "' + b"x" * BODY_LIMIT + b'"}'
    response = http.post("/api/publish", content=body, headers={"X-API-Key": API_KEY})
    assert (response.status_code, response.json()) == (
        413,
        {"error": {"code": 106, "message": "limit exceeded"}},
    )


def test_get_is_http_405(http: httpx.Client) -> None:
    response = http.get("/api/info", headers={"X-API-Key": API_KEY})
    assert response.status_code == 405


@pytest.fixture(scope="module")
def api_off() -> Iterator[ExampleServer]:
    with run_example(secret=SECRET, api_key=None) as running:
        yield running


def test_api_without_key_answers_404_everywhere(api_off: ExampleServer) -> None:
    with httpx.Client(base_url=api_off.base_url, trust_env=False) as http:
        statuses = [
            http.post("/api/publish", json={}, headers={"X-API-Key": "x"}).status_code,
            http.post("/api/info", json={}).status_code,
            http.get("/api/info").status_code,
            http.get("/").status_code,
        ]
    assert statuses == [404, 404, 404, 200]


def test_cent_raises_transport_error_404_when_the_api_is_off(
    api_off: ExampleServer,
) -> None:
    session = requests.Session()
    session.trust_env = False
    client = Client(api_off.api_url, "any", session=session)
    with pytest.raises(CentTransportError) as caught:
        client.info(InfoRequest())
    assert caught.value.status_code == 404


class _Messages:
    """An ASGI ``receive`` that hands out the given messages in turn."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self._messages = list(messages)

    async def __call__(self) -> dict[str, Any]:
        return self._messages.pop(0)


async def _handle(
    *messages: dict[str, Any], length: bytes | None = None
) -> list[dict[str, Any]]:
    from exporthub.realtime import ChannelOptions, Node, NodeConfig
    from exporthub.realtime.server_api import ServerAPI

    node = Node(
        NodeConfig(ping_interval=0, namespaces={"news": ChannelOptions()}), SECRET
    )
    await node.start()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/publish",
        "headers": [(b"x-api-key", API_KEY.encode())],
    }
    if length is not None:
        scope["headers"].append((b"content-length", length))
    try:
        await ServerAPI(node, API_KEY).handle(scope, _Messages(*messages), send)
    finally:
        await node.shutdown()
    return sent


async def test_a_body_arriving_in_pieces_is_put_together() -> None:
    sent = await _handle(
        {"type": "http.request", "body": b'{"channel":"news:a",', "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b'"data":{"n":1}}', "more_body": False},
    )
    assert sent == [
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"13"),
            ],
        },
        {"type": "http.response.body", "body": b'{"result":{}}'},
    ]


async def test_a_client_gone_before_its_body_arrived_gets_nothing() -> None:
    sent = await _handle(
        {"type": "http.request", "body": b'{"channel":', "more_body": True},
        {"type": "http.disconnect"},
    )
    assert sent == []


async def test_a_content_length_that_is_no_number_is_not_trusted() -> None:
    # "\xb2" reads as "²", which str.isdigit accepts and int() refuses.
    sent = await _handle(
        {"type": "http.request", "body": b'{"channel":"news:a","data":1}'},
        length=b"\xb2",
    )
    assert sent[0]["status"] == 200
    assert sent[1] == {"type": "http.response.body", "body": b'{"result":{}}'}
