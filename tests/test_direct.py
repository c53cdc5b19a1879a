"""The direct WebSocket protocol driven byte by byte, on a recording
transport: what happens when a client stops answering, and when writing to
one connection fails."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace

import orjson
import pytest
from websockets.frames import Frame, Opcode

from exporthub.realtime import (
    ChannelOptions,
    Node,
    NodeConfig,
    WebSocketEndpoint,
    direct,
)
from exporthub.realtime.tokens import issue

SECRET = "direct-protocol-test-secret-0123456789"

PATH = "/connection/websocket"
KEY = base64.b64encode(b"0123456789abcdef").decode()
HANDSHAKE = (
    f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
).encode()


@pytest.fixture
async def node():
    node = Node(
        NodeConfig(ping_interval=0, namespaces={"exports": ChannelOptions()}),
        SECRET,
    )
    await node.start()
    yield node
    await node.shutdown()


class Transport(asyncio.Transport):
    """Records what is written; can be told to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.aborted = False
        self.fail = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        if self.fail:
            raise OSError("the socket is gone")
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def client_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True, extensions=[])


async def open_connection(protocol_class) -> tuple[asyncio.Protocol, Transport]:
    server_state = SimpleNamespace(connections=set())
    protocol = protocol_class(config=None, server_state=server_state, app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    assert transport.written.startswith(b"HTTP/1.1 101 ")
    transport.written = b""
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1"])
    protocol.data_received(
        client_frame(orjson.dumps({"id": 1, "connect": {"token": token}}).decode())
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert b'"connect"' in transport.written
    return protocol, transport


async def test_a_client_that_does_not_answer_the_close_is_dropped(
    node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct, "CLOSE_TIMEOUT", 0.05)
    endpoint = WebSocketEndpoint(node)
    protocol, transport = await open_connection(direct.protocol_class(endpoint, PATH))
    protocol.close(3001, "shutdown")
    assert not transport.aborted
    await asyncio.sleep(0.15)
    assert transport.aborted


async def test_a_failed_write_to_one_connection_does_not_hold_up_the_others(
    node,
) -> None:
    endpoint = WebSocketEndpoint(node)
    protocol_class = direct.protocol_class(endpoint, PATH)
    broken, broken_transport = await open_connection(protocol_class)
    healthy, healthy_transport = await open_connection(protocol_class)
    broken_transport.fail = True
    healthy_transport.written = b""
    broken.write(b'{"a":1}')
    healthy.write(b'{"b":2}')
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert broken_transport.aborted
    assert healthy_transport.written.endswith(b'{"b":2}')


async def test_a_failed_abort_does_not_hold_up_the_others_either(node) -> None:
    endpoint = WebSocketEndpoint(node)
    protocol_class = direct.protocol_class(endpoint, PATH)
    broken, broken_transport = await open_connection(protocol_class)
    healthy, healthy_transport = await open_connection(protocol_class)
    broken_transport.fail = True

    def abort() -> None:
        raise OSError("the transport is broken too")

    broken_transport.abort = abort  # type: ignore[method-assign]
    healthy_transport.written = b""
    broken.write(b'{"a":1}')
    healthy.write(b'{"b":2}')
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert healthy_transport.written.endswith(b'{"b":2}')


class RecordingHTTP(asyncio.Protocol):
    """Stands in for uvicorn's HTTP protocol: records what reaches it."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        self.received = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data


class SwitchableTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.protocol: asyncio.BaseProtocol | None = None

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol | None:
        return self.protocol


def front_connection(endpoint) -> tuple[asyncio.Protocol, SwitchableTransport, set]:
    channel_class = direct.protocol_class(endpoint, PATH)
    front_class = direct.front_protocol_class(channel_class, RecordingHTTP)
    server_state = SimpleNamespace(connections=set())
    front = front_class(config=None, server_state=server_state, app_state={})
    transport = SwitchableTransport()
    front.connection_made(transport)
    return front, transport, server_state.connections


async def test_the_front_hands_a_channel_request_to_the_websocket_protocol(
    node,
) -> None:
    front, transport, connections = front_connection(WebSocketEndpoint(node))
    assert connections == {front}
    front.data_received(HANDSHAKE)
    assert type(transport.protocol).__name__ == "ChannelProtocol"
    assert connections == {transport.protocol}
    assert transport.written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        HANDSHAKE.replace(PATH.encode(), PATH.encode() + b"x"),
        HANDSHAKE.replace(b"GET ", b"POST "),
    ],
    ids=["other-path", "longer-path", "other-method"],
)
async def test_the_front_hands_everything_else_to_http_untouched(
    node, request_bytes: bytes
) -> None:
    front, transport, connections = front_connection(WebSocketEndpoint(node))
    front.data_received(request_bytes)
    assert isinstance(transport.protocol, RecordingHTTP)
    assert transport.protocol.received == request_bytes
    assert transport.written == b""
    assert connections == set()


async def test_the_front_closes_a_connection_that_sent_nothing_on_shutdown(
    node,
) -> None:
    front, transport, connections = front_connection(WebSocketEndpoint(node))
    front.shutdown()
    assert transport.closed
    front.connection_lost(None)
    assert connections == set()


async def test_http_writes_of_one_loop_turn_reach_the_socket_as_one(node) -> None:
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    front.data_received(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    http_transport = transport.protocol.transport
    writes: list[bytes] = []
    transport.write = writes.append  # type: ignore[method-assign]
    http_transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    http_transport.write(b"ok")
    assert writes == []
    assert http_transport.get_write_buffer_size() == 40
    await asyncio.sleep(0)
    assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    http_transport.write(b"bye")
    http_transport.close()  # what was written goes out before the close
    assert writes[-1] == b"bye"
    assert transport.closed


async def test_aborting_an_http_connection_drops_what_is_unwritten(node) -> None:
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    front.data_received(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    http_transport = transport.protocol.transport
    http_transport.write(b"HTTP/1.1 200 OK\r\n")
    http_transport.abort()
    await asyncio.sleep(0)
    assert transport.aborted
    assert transport.written == b""


@pytest.mark.parametrize("cut", [1, 4, 10, len(b"GET " + PATH.encode())])
async def test_the_front_waits_for_a_request_line_that_arrives_in_pieces(
    node, cut: int
) -> None:
    front, transport, connections = front_connection(WebSocketEndpoint(node))
    front.data_received(HANDSHAKE[:cut])
    assert transport.protocol is None
    assert connections == {front}
    front.data_received(HANDSHAKE[cut:])
    assert type(transport.protocol).__name__ == "ChannelProtocol"
    assert transport.written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


async def test_a_split_request_line_of_another_path_reaches_http_whole(
    node,
) -> None:
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    request = b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    front.data_received(request[:5])  # "GET /" could still be the channel
    assert transport.protocol is None
    front.data_received(request[5:])
    assert isinstance(transport.protocol, RecordingHTTP)
    assert transport.protocol.received == request


async def test_draining_with_no_connections_neither_waits_nor_warns(
    node, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = WebSocketEndpoint(node)
    await asyncio.wait_for(endpoint.drain(0), 1)
    assert "still open" not in caplog.text


def handshake_connection(node) -> tuple[asyncio.Protocol, Transport]:
    protocol_class = direct.protocol_class(WebSocketEndpoint(node), PATH)
    server_state = SimpleNamespace(connections=set())
    protocol = protocol_class(config=None, server_state=server_state, app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def status_line(written: bytes) -> bytes:
    return written.partition(b"\r\n")[0]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (
            b"GET /connection/websocket\xc3\xa9 HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 400 Bad Request",
        ),
        (
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\nabc"),
            b"HTTP/1.1 400 Bad Request",
        ),
        (
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
            b"HTTP/1.1 400 Bad Request",
        ),
        (
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\n" + b"X-Pad: y\r\n" * 129 + b"\r\n"),
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            HANDSHAKE.replace(
                b"\r\n\r\n", b"\r\nX-Pad: " + b"y" * 70_000 + b"\r\n\r\n"
            ),
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            HANDSHAKE.replace(b"Sec-WebSocket-Key", b"X-Not-The-Key"),
            b"HTTP/1.1 400 Bad Request",
        ),
        (
            HANDSHAKE.replace(b"Connection: Upgrade\r\n", b""),
            b"HTTP/1.1 426 Upgrade Required",
        ),
        (
            HANDSHAKE.replace(b"GET ", b"POST "),
            b"HTTP/1.1 405 Method Not Allowed",
        ),
        (
            HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/1.0"),
            b"HTTP/1.1 505 HTTP Version Not Supported",
        ),
        (
            HANDSHAKE.replace(PATH.encode(), b"/elsewhere"),
            b"HTTP/1.1 404 Not Found",
        ),
        (
            HANDSHAKE.replace(PATH.encode(), PATH.encode() + b"?" + b"q" * 9000),
            b"HTTP/1.1 414 Request-URI Too Long",
        ),
        (
            # Two requests in one read: the first is answered, the second,
            # whose target would be read onto the first's, is not read.
            b"GET "
            + PATH.encode()
            + b"?a HTTP/1.1\r\nHost: h\r\n\r\n"
            + HANDSHAKE.replace(PATH.encode(), b"/b"),
            b"HTTP/1.1 426 Upgrade Required",
        ),
    ],
    ids=[
        "not-http",
        "non-ascii-target",
        "body",
        "chunked-body",
        "too-many-headers",
        "huge-header",
        "no-key",
        "no-upgrade",
        "post",
        "http-1.0",
        "other-path",
        "long-target",
        "pipelined",
    ],
)
async def test_a_bad_handshake_gets_a_clear_answer_and_is_closed(
    node, request_bytes: bytes, status: bytes
) -> None:
    protocol, transport = handshake_connection(node)
    protocol.data_received(request_bytes)
    assert status_line(transport.written) == status
    assert transport.closed
    # Whatever the client sends afterwards is not read as frames.
    protocol.data_received(client_frame('{"id":1,"connect":{}}'))
    assert status_line(transport.written) == status
    assert node.stats.commands == {}


async def test_a_huge_header_arriving_slowly_is_refused_before_it_ends(node) -> None:
    protocol, transport = handshake_connection(node)
    protocol.data_received(HANDSHAKE.partition(b"\r\n\r\n")[0] + b"\r\nX-Pad: ")
    for _ in range(70):
        protocol.data_received(b"y" * 1000)
        if transport.closed:
            break
    assert status_line(transport.written) == (
        b"HTTP/1.1 431 Request Header Fields Too Large"
    )


async def test_a_handshake_split_at_every_byte_opens(node) -> None:
    protocol, transport = handshake_connection(node)
    for i in range(len(HANDSHAKE)):
        assert transport.written == b""
        protocol.data_received(HANDSHAKE[i : i + 1])
    assert status_line(transport.written) == b"HTTP/1.1 101 Switching Protocols"
    assert b"Sec-WebSocket-Accept: " in transport.written
    assert not transport.closed


async def test_frames_right_behind_the_handshake_are_read(node) -> None:
    protocol, transport = handshake_connection(node)
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1"])
    connect = client_frame(
        orjson.dumps({"id": 1, "connect": {"token": token}}).decode()
    )
    ping = client_frame('{"id":2,"ping":{}}')
    protocol.data_received(HANDSHAKE + connect + ping[:3])
    protocol.data_received(ping[3:])
    for _ in range(20):
        await asyncio.sleep(0)
    head, _, frames = transport.written.partition(b"\r\n\r\n")
    assert status_line(head + b"\r\n") == b"HTTP/1.1 101 Switching Protocols"
    assert b'"id":1,"connect":{"client":' in frames
    assert b'{"id":2,"ping":{}}' in frames


async def test_only_one_answer_is_given_to_pipelined_requests(node) -> None:
    protocol, transport = handshake_connection(node)
    plain = b"GET " + PATH.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    protocol.data_received(plain + HANDSHAKE)
    protocol.data_received(HANDSHAKE)
    assert transport.written.count(b"HTTP/1.1 ") == 1
    assert status_line(transport.written) == b"HTTP/1.1 426 Upgrade Required"


def quick_stale(node, delay: float = 0.05) -> None:
    node.config.stale_delay = delay


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_connection_that_sends_nothing_is_closed_when_stale(node) -> None:
    quick_stale(node)
    front, transport, connections = front_connection(WebSocketEndpoint(node))
    await settle(0.1)
    assert transport.closed
    assert transport.written == b""
    front.connection_lost(None)
    assert connections == set()


async def test_a_handshake_trickling_in_is_dropped_when_stale(node) -> None:
    quick_stale(node)
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    front.data_received(HANDSHAKE[:40])
    assert type(transport.protocol).__name__ == "ChannelProtocol"
    await settle(0.1)
    assert transport.aborted
    assert transport.written == b""


async def test_a_websocket_that_never_connects_is_closed_as_stale_from_its_accept(
    node,
) -> None:
    quick_stale(node)
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    front.data_received(HANDSHAKE)
    assert status_line(transport.written) == b"HTTP/1.1 101 Switching Protocols"
    await settle(0.1)
    # The server's close frame: code 3502 (0x0DAE), reason "stale".
    assert transport.written.endswith(b"\x88\x07\x0d\xaestale")


async def test_a_client_that_connects_in_time_keeps_its_connection(node) -> None:
    quick_stale(node, 0.1)
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    front.data_received(HANDSHAKE)
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1"])
    transport.protocol.data_received(  # type: ignore[union-attr]
        client_frame(orjson.dumps({"id": 1, "connect": {"token": token}}).decode())
    )
    await settle(0.25)
    assert b'"connect":{"client":' in transport.written
    assert not transport.closed and not transport.aborted
    assert b"stale" not in transport.written


async def test_a_request_for_http_has_no_stale_timer_of_the_channel(node) -> None:
    quick_stale(node)
    front, transport, _ = front_connection(WebSocketEndpoint(node))
    front.data_received(b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await settle(0.1)
    assert isinstance(transport.protocol, RecordingHTTP)
    assert not transport.closed and not transport.aborted
