"""The WebSocket transport: a thin ASGI adapter around :class:`Session`.

Messages a session writes are queued and sent by one writer task per
connection; whatever has accumulated since the last send goes out as a
single frame, newline-separated, as the protocol allows. A client that
lets more than ``max_queue_bytes`` pile up is disconnected as slow.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from exporthub.realtime.codes import Disconnect
from exporthub.realtime.node import Node
from exporthub.realtime.session import Session

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Any
Send = Any


class _Outbox:
    """The transport given to a session: a write queue and a close request.

    The writer parks on a future only when it has nothing to send, so a
    burst of publications to a busy connection allocates nothing per
    message, and waking an idle writer costs one ``set_result``.
    """

    __slots__ = ("_close", "_limit", "_messages", "_queued", "_waiter", "session")

    def __init__(self, limit: int) -> None:
        self._messages: list[bytes] = []
        self._queued = 0
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._close: tuple[int, str] | None = None
        self.session: Session | None = None

    def write(self, message: bytes) -> None:
        if self._close is not None:
            return
        self._messages.append(message)
        self._queued += len(message)
        if self._queued > self._limit and self.session is not None:
            self._messages.clear()
            self.session.disconnect(Disconnect.SLOW)
        self._wake()

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, send: Send) -> None:
        """Send queued messages until the session closes."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._messages and self._close is None:
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if self._messages:
                batch, self._messages = self._messages, []
                self._queued = 0
                frame = b"\n".join(batch)
                await send({"type": "websocket.send", "text": frame.decode()})
            if self._close is not None and not self._messages:
                code, reason = self._close
                await send({"type": "websocket.close", "code": code, "reason": reason})
                return


class WebSocketEndpoint:
    """ASGI app serving the Centrifugo client protocol (JSON) for ``node``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._open: dict[Session, None] = {}
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    async def drain(self, grace: float) -> None:
        """Close every connection with the shutdown code (3001), so clients
        reconnect to another node, and wait up to ``grace`` seconds for
        the close frames to be handed to the server."""
        self.node.drain()
        for session in list(self._open):
            session.disconnect(Disconnect.SHUTDOWN)
        if not self._open:
            return
        try:
            await asyncio.wait_for(self._all_closed.wait(), grace)
        except TimeoutError:
            logger.warning(
                "%d connections still open after %.0fs of draining",
                len(self._open),
                grace,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise RuntimeError("WebSocketEndpoint serves WebSocket connections only")
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        if self.node.draining:
            code, reason = Disconnect.SHUTDOWN.value
            await send({"type": "websocket.close", "code": code, "reason": reason})
            return

        outbox = _Outbox(self.node.config.max_queue_bytes)
        session = Session(self.node, outbox)
        outbox.session = session
        self.register(session)
        session.expect_connect()
        # One task writes; this one reads until the peer or the server
        # ends the connection (uvicorn reports both as a disconnect).
        writer = asyncio.ensure_future(outbox.run(send))
        try:
            await self._read(session, receive)
        finally:
            self.forget(session)
            session.closed()
            outbox.session = None  # No cycle left for the collector.
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, OSError):
                pass
            except Exception:
                # A send on a socket the peer already closed.
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("transport task ended", exc_info=True)

    def register(self, session: Session) -> None:
        """Count ``session`` among the open connections that drain closes."""
        self._open[session] = None
        self._all_closed.clear()

    def forget(self, session: Session) -> None:
        """``session``'s connection is gone."""
        self._open.pop(session, None)
        if not self._open:
            self._all_closed.set()

    @staticmethod
    async def _read(session: Session, receive: Receive) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                await session.handle_frame(data)
            elif kind == "websocket.disconnect":
                return
