"""exporthub's Python CPU per new connection, in one process, no sockets.

The real ``exporthub serve`` application (SQLite in a temporary directory,
the dashboard snapshot on connect) and its real protocol classes, driven
with a transport that records what is written: each connection gets the
handshake request, then a masked ``connect`` frame with its own token (five
server-side channels). The loop runs every 50 connections, and at the end
of a round until the snapshot batches are done. Process CPU per connection
is printed for each round (median and minimum); the connections are closed
between rounds. The kernel's share of a real storm (accepting, reading,
writing) is left out on purpose: this measures what exporthub's code costs.

Usage::

    python bench/connection_cost.py [--clients 4000] [--rounds 7] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import pstats
import resource
import statistics
import sys
import tempfile
from types import SimpleNamespace
from typing import Any

import common
import orjson


class RecordingTransport:
    """Enough of an asyncio transport for the front and channel protocols."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.protocol: Any = None
        self.closed = False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _requests(n: int) -> list[tuple[bytes, bytes]]:
    from websockets.frames import Frame, Opcode

    from exporthub.realtime.tokens import issue

    made = []
    for i in range(n):
        user = common.user_name(i)
        token = issue(
            common.SECRET, user, ttl=3600, channels=common.personal_channels(user)
        )
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        command = orjson.dumps({"id": 1, "connect": {"token": token}})
        frame = Frame(Opcode.TEXT, command).serialize(mask=True, extensions=[])
        made.append((request, frame))
    return made


async def _measure(args: argparse.Namespace) -> None:
    from exporthub.api.app import _settle_garbage_collector, create_app
    from exporthub.api.serving import http_protocol, websocket_protocol

    app = create_app(run_worker=False)
    async with app.router.lifespan_context(app):
        front = http_protocol(websocket_protocol(app))
        assert not isinstance(front, str)
        state = SimpleNamespace(connections=set())
        requests = _requests(args.clients)
        _settle_garbage_collector()
        profile = cProfile.Profile() if args.profile else None
        costs = []
        for _ in range(args.rounds):
            transports = []
            started = _cpu()
            if profile:
                profile.enable()
            for i, (request, frame) in enumerate(requests):
                transport = RecordingTransport()
                protocol = front(None, state, {})
                protocol.connection_made(transport)
                protocol.data_received(request)
                transport.protocol.data_received(frame)
                transports.append(transport)
                if i % 50 == 49:
                    await asyncio.sleep(0)
            await asyncio.sleep(0.15)  # the last snapshot batches
            if profile:
                profile.disable()
            costs.append((_cpu() - started) / args.clients * 1e6)
            connected = sum(
                b'"connect":{"client":' in b"".join(t.written) for t in transports
            )
            if connected != args.clients:
                raise SystemExit(f"only {connected} of {args.clients} connected")
            for transport in transports:
                transport.protocol.connection_lost(None)
                transport.protocol = None
            await asyncio.sleep(0.05)
        print(
            f"{args.clients} connections x {args.rounds} rounds: "
            f"median {statistics.median(costs):.1f} us of CPU per connection, "
            f"min {min(costs):.1f} (rounds: {', '.join(f'{c:.0f}' for c in costs)})"
        )
        if profile:
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile, top by self time"
    )
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    common.use_repo_source()
    with tempfile.TemporaryDirectory() as data:
        os.environ.update(
            EXPORTHUB_DATA_DIR=data,
            EXPORTHUB_DATABASE_URL=f"sqlite:///{data}/exporthub.sqlite",
            EXPORTHUB_TOKEN_SECRET=common.SECRET,
            EXPORTHUB_API_KEY=common.API_KEY,
        )
        try:
            import uvloop
        except ImportError:
            asyncio.run(_measure(args))
        else:
            uvloop.run(_measure(args))


if __name__ == "__main__":
    sys.exit(main())
