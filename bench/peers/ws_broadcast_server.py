"""The ceiling: a bare broadcast server on the ``websockets`` library.

It does nothing but write bytes to the subscribers of a channel: no auth,
no protocol state, no per-connection task beyond the library's own. A
client names its channels in the query string (``/?channels=a,b``) and gets
``{"ready":true}`` once they are registered. A publication is framed once
per channel, in the same shape as a Centrifugo push so that clients parse
the same bytes as from exporthub, and written to every subscriber with
``websockets.broadcast`` (synchronous, no queue).

``websockets`` only serves GET, so the publish API (exporthub's shapes) is a
tiny HTTP/1.1 server on ``--api-port``.

Run: ``python bench/peers/ws_broadcast_server.py --port 18083 --api-port 18084``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common
import orjson
from websockets.asyncio.server import (
    ServerConnection,
    broadcast,
    serve,
)

Subscribers = dict[str, set[ServerConnection]]

_MAX_REQUEST = 1024 * 1024


def frame_for(channel: str, data: bytes) -> bytes:
    return b'{"push":{"channel":%s,"pub":{"data":%s}}}' % (orjson.dumps(channel), data)


def make_handler(
    subscribers: Subscribers,
) -> Callable[[ServerConnection], object]:
    async def handler(ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
        raw = query.get("channels", [""])[0]
        channels = [c for c in raw.split(",") if c]
        for channel in channels:
            subscribers.setdefault(channel, set()).add(ws)
        try:
            await ws.send(b'{"ready":true}', text=True)
            async for _ in ws:
                pass  # Clients send nothing here; drained to see the close.
        finally:
            for channel in channels:
                subs = subscribers.get(channel)
                if subs is not None:
                    subs.discard(ws)
                    if not subs:
                        del subscribers[channel]

    return handler


class ApiProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1 (keep-alive, Content-Length bodies) for the
    publisher's POSTs."""

    def __init__(self, subscribers: Subscribers, api_key: str) -> None:
        self._subscribers = subscribers
        self._api_key = api_key
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while self._transport is not None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_REQUEST:
                    self._transport.close()
                return
            lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length > _MAX_REQUEST:
                self._transport.close()
                return
            if len(self._buf) < end + 4 + length:
                return
            body = bytes(self._buf[end + 4 : end + 4 + length])
            del self._buf[: end + 4 + length]
            parts = lines[0].split(" ")
            target = parts[1] if len(parts) > 1 else ""
            status, reply = self._handle(target, headers, body)
            self._transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s"
                % (status, b"OK" if status == 200 else b"Error", len(reply), reply)
            )

    def _handle(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if headers.get("x-api-key") != self._api_key:
            return 401, b'{"error":{"code":101,"message":"unauthorized"}}'
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, b'{"error":{"code":107,"message":"bad request"}}'
        data = orjson.dumps(request.get("data"))
        if target == "/api/publish":
            channels = [request.get("channel")]
        elif target == "/api/broadcast":
            channels = request.get("channels") or []
        else:
            return 404, b'{"error":{"code":104,"message":"method not found"}}'
        for channel in channels:
            subs = self._subscribers.get(channel) if isinstance(channel, str) else None
            if subs:
                broadcast(subs, frame_for(channel, data), text=True)
        return 200, b'{"result":{}}'


async def serve_forever(host: str, port: int, api_port: int, api_key: str) -> None:
    subscribers: Subscribers = {}
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    api = await loop.create_server(
        lambda: ApiProtocol(subscribers, api_key), host, api_port, backlog=4096
    )
    async with serve(
        make_handler(subscribers), host, port, backlog=4096, compression=None
    ):
        await stop
    api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=common.HOST)
    parser.add_argument("--port", type=int, default=18083)
    parser.add_argument("--api-port", type=int, default=18084)
    args = parser.parse_args()
    common.install_fast_loop()
    api_key = os.environ.get("BENCH_API_KEY", common.API_KEY)
    asyncio.run(serve_forever(args.host, args.port, args.api_port, api_key))


if __name__ == "__main__":
    main()
