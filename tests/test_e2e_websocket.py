"""The channel server's WebSocket as ``exporthub serve`` runs it: other
paths, clients that send a lot at once and clients that stop reading."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import websockets
from cent import AsyncClient, PublishRequest
from websockets.frames import Frame, Opcode

from servers import WEBSOCKET_ACCEPT, run_server, websocket_request
from watcher import token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

API_KEY = "server-api-key-for-the-websocket-tests"
QUEUE_LIMIT = 256 * 1024
PAYLOAD = "x" * 32 * 1024
PUBLICATIONS = 600  # ~19 MiB, more than the socket buffers of loopback hold
STALE_DELAY = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("websocket") / "data"
    with run_server(
        data,
        EXPORTHUB_API_KEY=API_KEY,
        EXPORTHUB_MAX_QUEUE_BYTES=str(QUEUE_LIMIT),
        EXPORTHUB_STALE_DELAY=str(STALE_DELAY),
    ) as running:
        yield running


async def connected(server, user, **options) -> websockets.ClientConnection:
    """A raw connection past its connect reply and dashboard snapshot."""
    token = await token_getter(server.url, user["api_key"])()
    ws = await websockets.connect(server.ws_url, **options)
    await ws.send(orjson.dumps({"id": 1, "connect": {"token": token}}).decode())
    seen: list[dict] = []
    while not any("push" in m for m in seen):
        seen += [orjson.loads(line) for line in (await ws.recv()).split("\n")]
    assert "connect" in seen[0]
    return ws


def messages(frame: str) -> list[dict]:
    return [orjson.loads(line) for line in frame.split("\n")]


async def test_another_websocket_path_is_refused_with_404(server) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(server.ws_url.replace("/websocket", "/other"))
    assert refused.value.response.status_code == 404


async def test_commands_sent_all_at_once_are_answered_in_order(server) -> None:
    user = server.create_user("pipeline@example.com")
    ws = await connected(server, user)
    try:
        for command_id in range(2, 302):
            await ws.send(f'{{"id":{command_id},"ping":{{}}}}')
        replies: list[dict] = []
        while len(replies) < 300:
            replies += messages(await ws.recv())
        assert replies == [{"id": i, "ping": {}} for i in range(2, 302)]
    finally:
        await ws.close()


async def test_a_client_that_stops_reading_is_dropped_as_slow(server) -> None:
    slow_user = server.create_user("slow@example.com")
    fast_user = server.create_user("fast@example.com")
    # The library stops reading the socket once a frame is waiting.
    slow = await connected(server, slow_user, max_queue=1, max_size=None)
    fast = await connected(server, fast_user, max_size=None)
    received = 0

    async def read_fast() -> None:
        nonlocal received
        while received < PUBLICATIONS:
            for message in messages(await fast.recv()):
                if message.get("push", {}).get("pub"):
                    received += 1

    reader = asyncio.ensure_future(read_fast())
    api = AsyncClient(f"{server.url}/api", API_KEY)
    try:
        for _ in range(PUBLICATIONS):
            for user in (slow_user, fast_user):
                await api.publish(
                    PublishRequest(
                        channel=f"exports:{user['uuid']}", data={"pad": PAYLOAD}
                    )
                )
        await asyncio.wait_for(reader, 30)
        # The slow client finds, after what was buffered, the server's close.
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(slow.recv(), 30)
        assert (slow.close_code, slow.close_reason) == (3008, "slow")
        assert received == PUBLICATIONS
        await fast.send('{"id":9,"ping":{}}')
        assert messages(await fast.recv()) == [{"id": 9, "ping": {}}]
    finally:
        reader.cancel()
        await api.close()
        await slow.close()
        await fast.close()


async def test_a_message_sent_in_fragments_is_put_back_together(server) -> None:
    user = server.create_user("fragments@example.com")
    ws = await connected(server, user)
    try:
        await ws.send(['{"id":2,', '"ping"', ":{}}"])
        await ws.send([b'{"id":3,"pi', b'ng":{}}'])
        replies: list[dict] = []
        while len(replies) < 2:
            replies += messages(await ws.recv())
        assert replies == [{"id": 2, "ping": {}}, {"id": 3, "ping": {}}]
    finally:
        await ws.close()


async def test_a_burst_of_big_replies_is_cut_off_as_slow(server) -> None:
    # Four history replies of ~400 KB each, asked for in one frame: they
    # would pile up before reaching the socket; the limit stops them there.
    user = server.create_user("burst@example.com")
    channel = f"user:{user['uuid']}"
    api = AsyncClient(f"{server.url}/api", API_KEY)
    try:
        for _ in range(4):
            await api.publish(
                PublishRequest(channel=channel, data={"pad": "y" * 100_000})
            )
    finally:
        await api.close()
    ws = await connected(server, user, max_size=None)
    history = {"channel": channel, "limit": -1}
    burst = "\n".join(
        orjson.dumps({"id": i, "history": history}).decode() for i in range(2, 6)
    )
    await ws.send(burst)
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert (ws.close_code, ws.close_reason) == (3008, "slow")


async def test_a_websocket_that_never_connects_is_closed_as_stale(server) -> None:
    ws = await websockets.connect(server.ws_url)
    started = asyncio.get_running_loop().time()
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    waited = asyncio.get_running_loop().time() - started
    assert (ws.close_code, ws.close_reason) == (3502, "stale")
    assert STALE_DELAY * 0.5 < waited < STALE_DELAY * 5


async def test_connections_are_not_logged_one_by_one_at_info(server) -> None:
    # The server runs at INFO: a line per connection would drown the log.
    user = server.create_user("quiet@example.com")
    ws = await connected(server, user)
    await ws.close()
    assert "connection open" not in server.log()
    assert "connection closed" not in server.log()


@pytest.mark.parametrize("cuts", [(9, 30), (4, 5, 6, 7)], ids=["pieces", "bytes"])
async def test_a_handshake_whose_first_line_arrives_in_pieces_opens(
    server, cuts: tuple[int, ...]
) -> None:
    # The connect frame follows the handshake in the same write, before the
    # 101, as an impatient client might send it: nothing may be lost.
    user = server.create_user(f"pieces-{len(cuts)}@example.com")
    token = await token_getter(server.url, user["api_key"])()
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        command = orjson.dumps({"id": 1, "connect": {"token": token}})
        frame = Frame(Opcode.TEXT, command).serialize(mask=True, extensions=[])
        data = websocket_request(host) + frame
        for start, end in zip((0, *cuts), (*cuts, len(data)), strict=True):
            writer.write(data[start:end])
            await writer.drain()
            await asyncio.sleep(0.02)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert f"Sec-WebSocket-Accept: {WEBSOCKET_ACCEPT}\r\n".encode() in head
        received = b""
        while b'"connect":{"client":' not in received:
            received += await asyncio.wait_for(reader.read(65536), 10)
        assert received.startswith(b"\x81")  # a text frame, server to client
    finally:
        writer.close()


async def test_a_plain_get_of_the_channel_path_is_asked_to_upgrade(server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(server.ws_url.replace("ws://", "http://"))
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
