"""The session state machine, driven with no socket: a recording transport
stands in for the WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import orjson
import pytest

from exporthub.realtime import ChannelOptions, HistoryOptions, Node, NodeConfig
from exporthub.realtime.codes import Disconnect
from exporthub.realtime.session import Session, SnapshotLoad, SnapshotReply, State
from exporthub.realtime.tokens import issue

SECRET = "unit-test-secret-0123456789abcdef0123"


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def write(self, message: bytes) -> None:
        self.sent.append(orjson.loads(message))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def namespace(channel: str) -> str:
    head, sep, _ = channel.partition(":")
    if sep:
        return head
    return "job" if channel.startswith("export.") else ""


async def allow_own_jobs(user: str, channel: str) -> bool:
    return channel == f"export.{user}-job.job"


@pytest.fixture
async def node():
    history = ChannelOptions(history=HistoryOptions(size=10, ttl=60))
    node = Node(
        NodeConfig(
            ping_interval=0,
            max_frame_bytes=1024,
            namespaces={"exports": history, "user": ChannelOptions(), "job": history},
            namespace_of=namespace,
        ),
        SECRET,
        can_subscribe=allow_own_jobs,
    )
    await node.start()
    yield node
    await node.shutdown()


def open_session(node: Node) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    return Session(node, transport), transport


async def connected(node: Node, user: str = "u1", channels: list[str] | None = None):
    session, transport = open_session(node)
    token = issue(SECRET, user, ttl=60, channels=channels or [])
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    assert session.state is State.CONNECTED, transport.closed
    transport.sent.clear()
    return session, transport


async def test_connect_subscribes_to_the_token_channels(node: Node) -> None:
    session, transport = open_session(node)
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1", "user:u1"])
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    [reply] = transport.sent
    connect = reply["connect"]
    assert reply["id"] == 1
    assert connect["client"] == session.client_id
    assert connect["pong"] is True
    assert connect["expires"] is True
    assert 58 <= connect["ttl"] <= 60
    epoch = connect["subs"]["exports:u1"]["epoch"]
    assert connect["subs"] == {
        "exports:u1": {
            "recoverable": True,
            "positioned": True,
            "epoch": epoch,
            "offset": 0,
        },
        "user:u1": {},
    }


async def test_publications_reach_the_subscribers_with_their_offsets(
    node: Node,
) -> None:
    _, transport = await connected(node, channels=["exports:u1"])
    await node.publish("exports:u1", {"event": "job.created"})
    await node.publish("exports:u2", {"event": "not for u1"})
    assert transport.sent == [
        {
            "push": {
                "channel": "exports:u1",
                "pub": {"data": {"event": "job.created"}, "offset": 1},
            }
        }
    ]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "invalid token: token required"),
        ("garbage", "invalid token: Not enough segments"),
        (
            jwt.encode({"sub": "u1"}, "a-different-secret-0123456789abcdef", "HS256"),
            "invalid token: Signature verification failed",
        ),
        (
            jwt.encode({"sub": "u1", "channels": ["exports:u2"]}, None, "none"),
            "invalid token: The specified alg value is not allowed",
        ),
    ],
    ids=["empty", "malformed", "forged", "alg-none"],
)
async def test_a_bad_token_disconnects_with_invalid_token(
    node: Node, token: str, reason: str
) -> None:
    session, transport = open_session(node)
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    assert transport.sent == []
    assert transport.closed == (3500, reason)
    assert session.state is State.CLOSED


async def test_an_expired_token_gets_error_109_so_the_client_refreshes(
    node: Node,
) -> None:
    session, transport = open_session(node)
    token = jwt.encode({"sub": "u1", "exp": int(time.time()) - 5}, SECRET, "HS256")
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    assert transport.sent == [
        {"id": 1, "error": {"code": 109, "message": "token expired", "temporary": True}}
    ]
    assert transport.closed is None
    assert session.state is State.CONNECTING


async def test_a_command_before_connect_is_a_bad_request(node: Node) -> None:
    session, transport = open_session(node)
    await session.handle_frame(b'{"id":1,"subscribe":{"channel":"exports:u1"}}')
    assert transport.closed == (3501, "bad request: connect first")


async def test_malformed_json_is_a_bad_request(node: Node) -> None:
    session, transport = await connected(node)
    await session.handle_frame(b'{"id":2,"subscribe":')
    assert transport.closed is not None
    assert transport.closed[0] == 3501
    assert transport.closed[1].startswith("bad request: malformed JSON")


async def test_a_frame_over_the_size_limit_is_closed_as_too_big(node: Node) -> None:
    session, transport = await connected(node)
    await session.handle_frame(b'{"id":2,"ping":{},"pad":"' + b"x" * 2000 + b'"}')
    assert transport.closed == (1009, "message too big")


async def test_an_unknown_command_gets_method_not_found(node: Node) -> None:
    session, transport = await connected(node)
    await session.handle_frame(b'{"id":2,"teleport":{}}')
    assert transport.sent == [
        {"id": 2, "error": {"code": 104, "message": "method not found"}}
    ]
    assert transport.closed is None


async def test_clients_may_not_publish(node: Node) -> None:
    session, transport = await connected(node, channels=["exports:u1"])
    await session.handle_frame(
        b'{"id":2,"publish":{"channel":"exports:u1","data":{"event":"job.finished"}}}'
    )
    assert transport.sent == [
        {"id": 2, "error": {"code": 103, "message": "permission denied"}}
    ]


async def test_another_users_channel_is_permission_denied(node: Node) -> None:
    session, transport = await connected(node)
    await session.handle_frame(b'{"id":2,"subscribe":{"channel":"exports:u2"}}')
    assert transport.sent == [
        {"id": 2, "error": {"code": 103, "message": "permission denied"}}
    ]
    await node.publish("exports:u2", {"secret": True})
    assert len(transport.sent) == 1


async def test_a_channel_of_an_unknown_namespace_is_unknown(node: Node) -> None:
    session, transport = await connected(node)
    await session.handle_frame(b'{"id":2,"subscribe":{"channel":"nope:x"}}')
    assert transport.sent == [
        {"id": 2, "error": {"code": 102, "message": "unknown channel"}}
    ]


async def test_the_authorization_hook_admits_the_owner_of_a_job_channel(
    node: Node,
) -> None:
    session, transport = await connected(node)
    await session.handle_frame(b'{"id":2,"subscribe":{"channel":"export.u1-job.job"}}')
    [reply] = transport.sent
    assert reply["id"] == 2
    assert reply["subscribe"]["offset"] == 0
    await node.publish("export.u1-job.job", {"n": 1})
    assert transport.sent[-1] == {
        "push": {"channel": "export.u1-job.job", "pub": {"data": {"n": 1}, "offset": 1}}
    }


async def test_a_subscription_token_admits_its_channel_only(node: Node) -> None:
    session, transport = await connected(node)
    good = issue(SECRET, "u1", ttl=60, channel="export.other.job")
    wrong = issue(SECRET, "u1", ttl=60, channel="export.third.job")
    await session.handle_frame(
        orjson.dumps(
            {"id": 2, "subscribe": {"channel": "export.other.job", "token": good}}
        )
    )
    await session.handle_frame(
        orjson.dumps(
            {"id": 3, "subscribe": {"channel": "export.fourth.job", "token": wrong}}
        )
    )
    assert "subscribe" in transport.sent[0]
    assert transport.sent[1] == {
        "id": 3,
        "error": {"code": 103, "message": "permission denied"},
    }


async def test_subscribing_twice_is_already_subscribed(node: Node) -> None:
    session, transport = await connected(node, channels=["exports:u1"])
    await session.handle_frame(b'{"id":2,"subscribe":{"channel":"exports:u1"}}')
    assert transport.sent == [
        {"id": 2, "error": {"code": 105, "message": "already subscribed"}}
    ]


async def test_unsubscribe_stops_delivery(node: Node) -> None:
    session, transport = await connected(node, channels=["exports:u1"])
    await session.handle_frame(b'{"id":2,"unsubscribe":{"channel":"exports:u1"}}')
    await node.publish("exports:u1", {"n": 1})
    assert transport.sent == [{"id": 2, "unsubscribe": {}}]


async def test_recovery_returns_exactly_the_missed_publications(node: Node) -> None:
    await node.publish("exports:u1", {"n": 1})
    position = await node.publish("exports:u1", {"n": 2})
    await node.publish("exports:u1", {"n": 3})
    await node.publish("exports:u1", {"n": 4})
    session, transport = open_session(node)
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1"])
    subs = {"exports:u1": {"recover": True, "offset": 2, "epoch": position.epoch}}
    await session.handle_frame(
        orjson.dumps({"id": 1, "connect": {"token": token, "subs": subs}})
    )
    result = transport.sent[0]["connect"]["subs"]["exports:u1"]
    assert result["recovered"] is True
    assert result["was_recovering"] is True
    # The client's own position; each recovered publication moves it.
    assert result["offset"] == 2
    assert result["publications"] == [
        {"data": {"n": 3}, "offset": 3},
        {"data": {"n": 4}, "offset": 4},
    ]


async def test_recovery_from_another_epoch_is_refused(node: Node) -> None:
    await node.publish("exports:u1", {"n": 1})
    session, transport = open_session(node)
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1"])
    subs = {"exports:u1": {"recover": True, "offset": 1, "epoch": "stale"}}
    await session.handle_frame(
        orjson.dumps({"id": 1, "connect": {"token": token, "subs": subs}})
    )
    result = transport.sent[0]["connect"]["subs"]["exports:u1"]
    assert result["recovered"] is False
    assert "publications" not in result


async def test_refresh_extends_the_connection(node: Node) -> None:
    session, transport = await connected(node)
    token = issue(SECRET, "u1", ttl=3600)
    await session.handle_frame(orjson.dumps({"id": 2, "refresh": {"token": token}}))
    [reply] = transport.sent
    assert reply["refresh"]["expires"] is True
    assert 3598 <= reply["refresh"]["ttl"] <= 3600


async def test_refresh_with_another_users_token_is_refused(node: Node) -> None:
    session, transport = await connected(node)
    token = issue(SECRET, "u2", ttl=3600)
    await session.handle_frame(orjson.dumps({"id": 2, "refresh": {"token": token}}))
    assert transport.closed == (3500, "invalid token: token of another user")


async def test_a_connection_whose_token_expires_is_disconnected(node: Node) -> None:
    session, transport = open_session(node)
    token = jwt.encode({"sub": "u1", "exp": int(time.time()) + 1}, SECRET, "HS256")
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    assert session.state is State.CONNECTED
    session.expires_at = int(time.time()) - 1
    session._check_expiry()
    assert transport.closed == (3005, "connection expired")


async def test_a_client_that_does_not_pong_is_dropped(node: Node) -> None:
    node.config.ping_interval = 0.05
    node.config.pong_timeout = 0.05
    _, transport = await connected(node)
    await asyncio.sleep(0.3)
    assert {} in transport.sent
    assert transport.closed == (3012, "no pong")


@pytest.mark.parametrize("taken", ["as a frame", "at once"])
async def test_a_client_that_pongs_stays_connected(node: Node, taken: str) -> None:
    node.config.ping_interval = 0.05
    node.config.pong_timeout = 0.04
    session, transport = await connected(node)
    for _ in range(8):
        await asyncio.sleep(0.03)
        if {} in transport.sent:
            transport.sent.clear()
            if taken == "at once":
                assert session.take_pong(b"{}") is True
            else:
                await session.handle_frame(b"{}")
    assert transport.closed is None


async def test_a_closed_session_leaves_the_hub(node: Node) -> None:
    session, _ = await connected(node, channels=["exports:u1"])
    session.closed()
    assert node.hub.subscribers("exports:u1") == []
    assert node.connection_count == 0


async def test_only_a_bare_pong_of_a_connected_session_is_taken_at_once(
    node: Node,
) -> None:
    waiting, _ = open_session(node)
    assert waiting.take_pong(b"{}") is False
    session, transport = await connected(node)
    assert session.take_pong(b'{"id":2,"ping":{}}') is False
    assert session.take_pong(b"{}\n{}") is False
    assert transport.sent == []


async def test_a_connection_that_never_connects_is_closed_as_stale(
    node: Node,
) -> None:
    node.config.stale_delay = 0.05
    session, transport = open_session(node)
    session.expect_connect()
    await asyncio.sleep(0.15)
    assert transport.closed == (3502, "stale")


async def test_a_connection_that_connects_in_time_is_not_stale(node: Node) -> None:
    node.config.stale_delay = 0.1
    session, transport = open_session(node)
    session.expect_connect()
    token = issue(SECRET, "u1", ttl=60)
    await session.handle_frame(orjson.dumps({"id": 1, "connect": {"token": token}}))
    await asyncio.sleep(0.25)
    assert session.state is State.CONNECTED
    assert transport.closed is None


def loader(make: Callable[[], Awaitable[bytes | None]]) -> SnapshotLoad:
    """A ``load`` for :meth:`Session.send_snapshot` that replies with what
    ``make()`` returns (or raises) on a later turn of the loop."""

    def load(reply: SnapshotReply) -> None:
        async def run() -> None:
            try:
                snapshot = await make()
            except Exception as exc:
                reply(None, exc)
            else:
                reply(snapshot, None)

        background.append(asyncio.ensure_future(run()))

    background: list[asyncio.Future[None]] = []
    return load


async def snapshot_sent(
    session: Session, channel: str, load: SnapshotLoad, **kw: Any
) -> bool:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    session.send_snapshot(channel, load, done=done.set_result, **kw)
    return await asyncio.wait_for(done, 5)


async def test_a_snapshot_overtaken_while_loading_is_loaded_again(node: Node) -> None:
    session, transport = await connected(node, channels=["exports:u1"])
    loads: list[int] = []

    async def make() -> bytes:
        loads.append(len(loads) + 1)
        if len(loads) == 1:
            # An update reaches the session while the first snapshot loads.
            await node.publish("exports:u1", {"update": 1})
        return orjson.dumps({"snapshot": len(loads)})

    assert await snapshot_sent(session, "exports:u1", loader(make)) is True
    assert loads == [1, 2]
    assert [m["push"]["pub"]["data"] for m in transport.sent] == [
        {"update": 1},
        {"snapshot": 2},
    ]


async def test_a_snapshot_of_a_channel_that_never_holds_still_is_not_sent(
    node: Node,
) -> None:
    session, transport = await connected(node, channels=["exports:u1"])

    async def make() -> bytes:
        await node.publish("exports:u1", {"update": True})
        return b'{"snapshot":true}'

    assert await snapshot_sent(session, "exports:u1", loader(make), attempts=3) is False
    assert [m["push"]["pub"]["data"] for m in transport.sent] == [{"update": True}] * 3


async def test_a_snapshot_of_a_channel_not_subscribed_is_not_loaded(
    node: Node,
) -> None:
    session, transport = await connected(node)

    def load(reply: SnapshotReply) -> None:
        raise AssertionError("loaded for nothing")

    assert await snapshot_sent(session, "exports:u1", load) is False
    assert transport.sent == []


async def test_a_snapshot_that_fails_to_load_disconnects_to_try_again(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    session, transport = await connected(node, channels=["exports:u1"])

    async def make() -> bytes:
        raise RuntimeError("database gone")

    assert await snapshot_sent(session, "exports:u1", loader(make)) is False
    assert transport.sent == []
    assert transport.closed == (3004, "internal server error")
    assert session.state is State.CLOSED
    assert "loading a snapshot for client" in caplog.text


async def test_a_snapshot_loaded_after_the_client_left_is_not_sent(node: Node) -> None:
    session, transport = await connected(node, channels=["exports:u1"])
    gate = asyncio.Event()

    async def make() -> bytes:
        await gate.wait()
        return b'{"snapshot":true}'

    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    session.send_snapshot("exports:u1", loader(make), done=done.set_result)
    session.disconnect(Disconnect.SHUTDOWN)
    gate.set()
    assert await asyncio.wait_for(done, 5) is False
    assert transport.sent == []
