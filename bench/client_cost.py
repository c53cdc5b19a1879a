"""What a load-generator client costs, per connection and per message.

The clients share the machine's cores with the server under test, so the
cheaper they are the more the figures say about the server. This compares
the bench's lean clients with the obvious alternatives, each in one process
against a server started here on loopback:

* ``lean``: :class:`protocols.RawClient` on :mod:`wsclient` (the bench's).
* ``websockets``: the ``websockets`` library's asyncio client, one reader
  task per connection.
* ``lean-sio``: :class:`protocols.SocketIOClient` (the bench's).
* ``socketio``: python-socketio's ``AsyncClient``, one per connection.

Usage: ``python bench/client_cost.py --clients 1000 --pubs 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import common
import orjson
from protocols import RawClient, Recorder, SocketIOClient
from run import Publisher, PublishLog, ServerProcess, server_kinds
from wsclient import open_socket

Counter = Callable[[], int]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _token(i: int) -> str:
    common.use_repo_source()
    from exporthub.realtime.tokens import issue

    return issue(common.SECRET, f"f{i}", ttl=600, channels=[common.FANOUT_CHANNEL])


async def _lean(port: int, n: int, keep: list[Any], sio: bool) -> Counter:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    cls = SocketIOClient if sio else RawClient
    for i in range(n):
        token = _token(i) if sio else ""
        sock = await open_socket(common.HOST, port, common.HOST)
        _, client = await loop.create_connection(
            lambda t=token: cls(
                f"{common.HOST}:{port}", recorder, t, [common.FANOUT_CHANNEL]
            ),
            sock=sock,
        )
        await client.ready
        keep.append(client)
    return lambda: recorder.count


async def _websockets(port: int, n: int, keep: list[Any]) -> Counter:
    from websockets.asyncio.client import connect

    box = [0]

    async def read(ws: Any) -> None:
        async for message in ws:
            if "push" in orjson.loads(message):
                box[0] += 1

    for _ in range(n):
        uri = f"ws://{common.HOST}:{port}/?channels={common.FANOUT_CHANNEL}"
        ws = await connect(uri, compression=None)
        await ws.recv()
        keep.append((ws, asyncio.create_task(read(ws))))
    return lambda: box[0]


async def _socketio(port: int, n: int, keep: list[Any]) -> Counter:
    import socketio

    box = [0]

    def on_pub(data: Any) -> None:
        box[0] += 1

    for i in range(n):
        client = socketio.AsyncClient(reconnection=False)
        client.on("pub", on_pub)
        await client.connect(
            f"http://{common.HOST}:{port}",
            transports=["websocket"],
            auth={"token": _token(i)},
        )
        keep.append(client)
    return lambda: box[0]


async def measure(name: str, n: int, pubs: int) -> dict[str, Any]:
    kinds = server_kinds()
    kind = kinds[
        "websockets-ceiling" if name in ("lean", "websockets") else "python-socketio"
    ]
    server = ServerProcess(kind, common.BENCH_DIR / "results" / "logs" / "cost.log")
    keep: list[Any] = []
    await server.start()
    publisher = Publisher(kind.api_port)
    try:
        setups: dict[str, Callable[[], Awaitable[Counter]]] = {
            "lean": lambda: _lean(kind.port, n, keep, sio=False),
            "websockets": lambda: _websockets(kind.port, n, keep),
            "lean-sio": lambda: _lean(kind.port, n, keep, sio=True),
            "socketio": lambda: _socketio(kind.port, n, keep),
        }
        cpu0 = _cpu()
        count = await asyncio.wait_for(setups[name](), 300)
        cpu1 = _cpu()
        await asyncio.sleep(0.5)
        log = PublishLog()
        cpu2 = _cpu()
        for _ in range(pubs):
            await publisher.send(log, [common.FANOUT_CHANNEL])
        for _ in range(6000):  # At most a minute.
            if count() >= pubs * n:
                break
            await asyncio.sleep(0.01)
        cpu3 = _cpu()
        return {
            "client": name,
            "ms_per_connection": 1e3 * (cpu1 - cpu0) / n,
            "us_per_message": 1e6 * (cpu3 - cpu2) / max(1, count()),
            "received": count(),
        }
    finally:
        await publisher.aclose()
        for item in keep:
            if isinstance(item, tuple):
                await item[0].close()
                item[1].cancel()
            elif hasattr(item, "disconnect"):
                await item.disconnect()
            else:
                item.abort()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--pubs", type=int, default=20)
    parser.add_argument(
        "--only", default="lean,websockets,lean-sio,socketio", help="which clients"
    )
    args = parser.parse_args()
    common.raise_nofile(args.clients + 1024)
    common.install_fast_loop()
    print("| client | CPU ms/connection | CPU µs/message | received |")
    print("|---|---:|---:|---:|")
    for name in args.only.split(","):
        row = asyncio.run(measure(name, args.clients, args.pubs))
        print(
            f"| {row['client']} | {row['ms_per_connection']:.3f} | "
            f"{row['us_per_message']:.1f} | {row['received']} |",
            flush=True,
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
