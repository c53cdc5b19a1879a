"""A TCP proxy on a loopback port that tests can cut, like a network drop.

It runs its own event loop in a thread, so it keeps forwarding while the
test's loop is blocked (starting servers, running the command line). Its
upstream can be changed, to move a client from one server to another
without the client knowing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHUNK = 65536
CALL_TIMEOUT = 10.0


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to an upstream address.

    While down, it closes the connections it has and refuses new ones (they
    are accepted and closed at once, as by a broken link); :meth:`up`
    restores it.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0
        self.refused = 0
        self._down = False
        self._pairs: set[tuple[asyncio.Transport, asyncio.Transport]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()

    def cut(self) -> int:
        """Close every open connection; returns how many."""
        return self._call(self._cut())

    def down(self) -> int:
        """Cut every connection and refuse new ones until :meth:`up`."""
        self._down = True
        return self.cut()

    def up(self) -> None:
        self._down = False

    def point_to(self, port: int, host: str = "127.0.0.1") -> None:
        """Send new connections to another upstream."""
        self.upstream = (host, port)

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._cut()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=CALL_TIMEOUT / 2)

    async def _cut(self) -> int:
        pairs, self._pairs = self._pairs, set()
        for client, server in pairs:
            client.abort()
            server.abort()
        return len(pairs)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        client = writer.transport
        if self._down:
            self.refused += 1
            client.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.refused += 1
            client.abort()
            return
        self.accepted += 1
        pair = (client, up_writer.transport)
        self._pairs.add(pair)  # type: ignore[arg-type]
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)  # type: ignore[arg-type]
            client.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


@contextmanager
def proxy_to(port: int) -> Iterator[TcpProxy]:
    """A started proxy to ``127.0.0.1:port``; always stopped afterwards."""
    proxy = TcpProxy(port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
