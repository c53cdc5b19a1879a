"""The channel server's WebSocket served straight from uvicorn's socket.

Under ASGI every message crosses a ``send`` coroutine, a message dict and a
queue, and every connection needs a writer task. :func:`protocol_class`
instead builds a class uvicorn uses as its WebSocket implementation
(``uvicorn.Config(ws=...)``): the handshake request is read by ``httptools``
(uvicorn's C parser of HTTP/1.1), the handshake itself and the framing are
done by the sans-I/O protocol of the ``websockets`` library, and the bytes
go straight between the socket and a :class:`Session`.

- Messages a session writes during one turn of the event loop go out as a
  single frame per connection, newline-separated, when the turn ends; a
  publication to 10k subscribers is one pass over them.
- Frames a client sends are handled in order by a task that lives only
  while there is something to handle.
- A client whose unsent messages pass ``max_queue_bytes`` (counted before
  and after they reach the socket's buffer) is disconnected as slow, as the
  ASGI transport does; a client that does not answer a close frame within
  ten seconds is dropped with whatever was still unsent.
- A message sent in several frames is put back together before the
  session sees it.
- A handshake request that is no HTTP is answered 400; one whose target
  passes ``MAX_TARGET_BYTES`` 414; one over ``MAX_HANDSHAKE_BYTES`` or
  ``MAX_HANDSHAKE_HEADERS`` 431; one with a body 400; everything else the
  ``websockets`` library judges (426 without an upgrade, 400 without a
  valid key, 405 for another method...). Only the first request counts:
  whatever follows it before the 101 is frames, and after a refusal
  nothing. Frames sent right behind the request are kept.
- Through the front (below), a connection that has not completed its
  handshake and its ``connect`` within the node's ``stale_delay`` of being
  accepted is dropped (still in the handshake) or closed with 3502; the
  same timer covers both, so a client trickling its request byte by byte
  holds nothing for long.
- The connections are registered with the :class:`WebSocketEndpoint`, so
  its ``drain`` closes them too.

Only the channel path is served this way; any other WebSocket path is
answered with 404.

:func:`front_protocol_class` goes one step further for ``exporthub serve``:
it looks at the first bytes of every connection, and a ``GET`` of the
channel path goes to the WebSocket protocol before uvicorn's HTTP protocol
has parsed it (uvicorn would otherwise parse the request, build a scope, and
write the request out again for the WebSocket library to parse a second
time); a request line that arrives in pieces is put together before it is
looked at. Everything else goes to uvicorn's HTTP protocol, which then
writes through a :class:`_TurnWrites`: uvicorn writes a response's head and
its body separately, and each write would be a system call and a TCP
segment of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Protocol

import httptools
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from exporthub.realtime.codes import Disconnect
from exporthub.realtime.session import Session
from exporthub.realtime.transport import WebSocketEndpoint

logger = logging.getLogger(__name__)
library_logger = logging.getLogger(f"{__name__}.websockets")
"""Where the websockets library logs every connection's opening and closing
(INFO and DEBUG); only its warnings show unless this logger is turned up."""
library_logger.setLevel(logging.WARNING)

CLOSE_TIMEOUT = 10.0
"""Seconds a client has to answer our close frame before the socket goes."""
INBOX_PAUSE = 64
"""Unhandled frames from one client before its socket stops being read."""
MAX_HANDSHAKE_BYTES = 65536
"""Bytes a handshake request may take, request line and headers together."""
MAX_HANDSHAKE_HEADERS = 128
"""Header lines a handshake request may have (as the websockets library)."""
MAX_TARGET_BYTES = 8192
"""Bytes of a handshake request's target (as the websockets library)."""


class _TooLarge(Exception):
    """Raised from a parser callback to stop reading an oversized request."""


class _Flushable(Protocol):
    def flush(self) -> None: ...

    def abort(self) -> None: ...


class _Flusher:
    """Writes, once per turn of the event loop, what each connection was
    given during it."""

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[_Flushable] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self, connection: _Flushable) -> None:
        self._dirty.append(connection)
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            try:
                connection.flush()
            except Exception:
                # One connection's failure must not keep the rest waiting.
                logger.exception("writing to a connection failed")
                with contextlib.suppress(Exception):
                    connection.abort()


class _ChannelProtocol(asyncio.Protocol):
    """One WebSocket connection; also the :class:`Session`'s transport."""

    endpoint: WebSocketEndpoint
    path: str
    flusher: _Flusher

    __slots__ = (
        "_close_timer",
        "_closing",
        "_connections",
        "_fragments",
        "_headers",
        "_inbox",
        "_loop",
        "_max_queue",
        "_method",
        "_parser",
        "_pending",
        "_pending_bytes",
        "_reading",
        "_refusal",
        "_request_bytes",
        "_session",
        "_stale_timer",
        "_target",
        "_task",
        "_transport",
        "_version",
        "_ws",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        node = self.endpoint.node
        self._loop = _loop or asyncio.get_running_loop()
        self._connections: set[Any] = server_state.connections
        # Frames over the node's limit are refused by the session itself,
        # with its own close code; the library only stops absurd ones. The
        # request is read here, so the library starts at its frames.
        self._ws = ServerProtocol(
            max_size=node.config.max_frame_bytes * 2,
            logger=library_logger,
            state=State.OPEN,
        )
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(
            self
        )
        self._target = b""
        self._headers: list[tuple[str, str]] | None = []
        self._method: bytes | None = None  # set once the headers are read
        self._version = ""
        self._request_bytes = 0
        self._refusal: tuple[int, str] | None = None
        self._stale_timer: asyncio.TimerHandle | None = None
        """Started by the front when the connection was accepted."""
        self._max_queue = node.config.max_queue_bytes
        self._transport: asyncio.Transport | None = None
        self._session: Session | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._fragments: list[bytes] | None = None
        self._inbox: deque[bytes] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._reading = True

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._parser is not None:
            data = self._read_request(data)
        if not data or self._session is None:
            return  # the request is not whole yet, or was refused
        ws = self._ws
        ws.receive_data(data)
        for event in ws.events_received():
            if not isinstance(event, Frame):
                continue  # past the handshake, the library only sees frames
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._received(bytes(event.data))
                else:
                    self._fragments = [bytes(event.data)]
            elif opcode is Opcode.CONT and self._fragments is not None:
                # The library checks the order of fragments and the size of
                # the whole message.
                self._fragments.append(bytes(event.data))
                if event.fin:
                    message = b"".join(self._fragments)
                    self._fragments = None
                    self._received(message)
        self._send_output()

    # -- httptools callbacks, while the request is read ----------------------

    def on_url(self, url: bytes) -> None:
        if self._method is not None:
            return  # a second request behind the first: not read
        self._target += url
        if len(self._target) > MAX_TARGET_BYTES:
            self._refusal = (414, "Request target too long\n")
            raise _TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if self._method is not None or headers is None:
            return
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if len(headers) > MAX_HANDSHAKE_HEADERS:
            self._refusal = (431, "Request header fields too large\n")
            raise _TooLarge

    def on_headers_complete(self) -> None:
        parser = self._parser
        if self._method is None and parser is not None:
            self._method = parser.get_method()
            self._version = parser.get_http_version()

    def stale(self) -> None:
        """The front's timer ran out: drop a connection still in its
        handshake, close one still not connected as stale."""
        self._stale_timer = None
        if self._session is not None:
            self._session.check_stale()
        elif not self._closing:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._closing = True
        self._pending.clear()
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._task is not None:
            self._task.cancel()
        session = self._session
        if session is not None:
            self.endpoint.forget(session)
            session.closed()
        # Nothing holds the session or this protocol after this.
        self._session = None

    def pause_writing(self) -> None:
        # The buffer size is checked on every flush; see flush().
        pass

    def resume_writing(self) -> None:
        pass

    def shutdown(self) -> None:
        """uvicorn is stopping: say so to a client still here, then go; a
        client already told, and still here, is dropped."""
        if self._closing:
            self.abort()
            return
        if self._session is not None:
            self._session.disconnect(Disconnect.SHUTDOWN)
        if self._transport is not None:
            self._transport.close()

    # -- the session's transport -------------------------------------------

    def write(self, message: bytes) -> None:
        if self._closing:
            return
        if not self._pending:
            self.flusher.mark(self)
        self._pending.append(message)
        self._pending_bytes += len(message)
        if self._pending_bytes > self._max_queue:
            # Replies to a burst of commands pile up within one loop turn:
            # bound them here, not only once they reach the socket.
            self._pending.clear()
            self._pending_bytes = 0
            if self._session is not None:
                self._session.disconnect(Disconnect.SLOW)

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self.flush()
        self._closing = True
        try:
            self._ws.send_close(code, reason)
        except InvalidState:  # the client closed first
            return
        self._send_output()
        if self._transport is not None and not self._transport.is_closing():
            # A client that does not answer within the timeout may not be
            # reading at all: drop what is still unsent rather than wait.
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        """Drop the connection now, unsent data included."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def flush(self) -> None:
        """Send what the session wrote since the last flush, as one frame."""
        pending = self._pending
        if not pending or self._closing:
            pending.clear()
            self._pending_bytes = 0
            return
        frame = pending[0] if len(pending) == 1 else b"\n".join(pending)
        pending.clear()
        self._pending_bytes = 0
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._ws.send_text(frame)
        transport.write(b"".join(self._ws.data_to_send()))
        if transport.get_write_buffer_size() > self._max_queue and self._session:
            self._session.disconnect(Disconnect.SLOW)

    # -- internals ----------------------------------------------------------

    def _read_request(self, data: bytes) -> bytes:
        """Feed the handshake request to the parser; once it is whole, answer
        it, and return the bytes that came after it (b"" until then)."""
        parser = self._parser
        assert parser is not None
        self._request_bytes += len(data)
        rest = b""
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
        except httptools.HttpParserError:
            if self._method is None:
                self._refuse(*(self._refusal or (400, "Invalid WebSocket handshake\n")))
                return b""
            # What follows a whole request is not read: it is answered.
        # Whatever was read up to here counts, whole or not (the parser
        # buffers a line that is still arriving, unseen by the callbacks).
        if self._request_bytes - len(rest) > MAX_HANDSHAKE_BYTES:
            self._refuse(431, "Request header fields too large\n")
            return b""
        method = self._method
        if method is None:
            return b""
        self._parser = None
        request = self._request(method)
        if request is not None:
            self._handshake(request)
        return rest

    def _request(self, method: bytes) -> Request | None:
        """The request read, or None when it was refused."""
        pairs = self._headers or []
        self._headers = None
        try:
            headers = Headers(pairs)
            lengths = headers.get_all("Content-Length")
            if "Transfer-Encoding" in headers or any(v != "0" for v in lengths):
                self._refuse(400, "A WebSocket handshake has no body\n")
                return None
            return Request(
                self._target.decode("ascii"),
                headers,
                method=method.decode("ascii"),
                protocol=f"HTTP/{self._version}",
            )
        except (ValueError, LookupError):
            self._refuse(400, "Invalid WebSocket handshake\n")
            return None

    def _handshake(self, request: Request) -> None:
        ws = self._ws
        if request.path.partition("?")[0] != self.path:
            response = ws.reject(404, "Not Found\n")
        else:
            response = ws.accept(request)
        if response.status_code != 101:
            self._answer(response)
            return
        if self._transport is not None:
            self._transport.write(response.serialize())
        session = Session(self.endpoint.node, self)
        self._session = session
        self.endpoint.register(session)
        session.expect_connect(self._stale_timer)
        self._stale_timer = None
        if self.endpoint.node.draining:
            session.disconnect(Disconnect.SHUTDOWN)

    def _refuse(self, status: int, text: str) -> None:
        self._parser = None
        self._answer(self._ws.reject(status, text))

    def _answer(self, response: Response) -> None:
        """Send a response other than 101, and close."""
        self._closing = True
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        if self._transport is not None:
            self._transport.write(response.serialize())
            self._transport.close()

    def _send_output(self) -> None:
        """Write what the library queued (handshake, pongs, close frames);
        an empty chunk means the connection is to be closed."""
        transport = self._transport
        if transport is None:
            return
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()

    def _received(self, data: bytes) -> None:
        session = self._session
        if session is None or self._closing:
            return
        if self._task is None and session.take_pong(data):
            return  # Every client's answer to every ping: no task for it.
        self._inbox.append(data)
        if self._task is None:
            self._task = self._loop.create_task(self._handle_inbox())
        elif len(self._inbox) >= INBOX_PAUSE and self._reading:
            self._reading = False
            if self._transport is not None:
                self._transport.pause_reading()

    async def _handle_inbox(self) -> None:
        inbox = self._inbox
        try:
            while inbox and not self._closing and self._session is not None:
                await self._session.handle_frame(inbox.popleft())
                if not self._reading and len(inbox) < INBOX_PAUSE // 2:
                    self._reading = True
                    if self._transport is not None:
                        self._transport.resume_reading()
        except Exception:
            logger.exception("handling a client frame failed")
            if self._session is not None:
                self._session.disconnect(Disconnect.INTERNAL)
        finally:
            self._task = None


class _TurnWrites:
    """A transport that hands what is written to it during one turn of the
    event loop to the real transport as one write, when the turn ends."""

    __slots__ = ("_flusher", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, flusher: _Flusher) -> None:
        self._transport = transport
        self._flusher = flusher
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._flusher.mark(self)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        pending = sum(len(chunk) for chunk in self._pending)
        return self._transport.get_write_buffer_size() + pending

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _FrontProtocol(asyncio.Protocol):
    """A new connection, until its first bytes say who serves it."""

    channel_class: type[_ChannelProtocol]
    http_class: type[asyncio.Protocol]
    request_line: bytes

    __slots__ = ("_args", "_connections", "_head", "_successor", "_timer", "_transport")

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._args = (config, server_state, app_state, _loop)
        self._connections: set[Any] = server_state.connections
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None
        self._successor: _ChannelProtocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        # One timer from here to the client's connect command: the session
        # takes it over and cancels it once connected.
        delay = self.channel_class.endpoint.node.config.stale_delay
        if delay > 0:
            loop = self._args[3] or asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._successor is not None:
            self._successor.stale()
        elif self._transport is not None:
            self._transport.close()  # not even a whole request line

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        line = self.request_line
        if self._head:
            data = self._head + data
        if len(data) <= len(line) and line.startswith(data):
            # Too short to tell yet: wait for the rest of the request line.
            self._head = data
            return
        self._head = b""
        self._connections.discard(self)
        config, server_state, app_state, loop = self._args
        protocol: asyncio.Protocol
        if data.startswith(line) and data[len(line) : len(line) + 1] in (b" ", b"?"):
            channel = self.channel_class(config, server_state, app_state, loop)
            channel._stale_timer, self._timer = self._timer, None
            self._successor = channel
            protocol = channel
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        else:
            if self._timer is not None:
                self._timer.cancel()  # uvicorn has its own timeouts
                self._timer = None
            protocol = self.http_class(  # type: ignore[call-arg]
                config=config,
                server_state=server_state,
                app_state=app_state,
                _loop=loop,
            )
            transport.set_protocol(protocol)
            turn_writes = _TurnWrites(transport, self.channel_class.flusher)
            protocol.connection_made(turn_writes)  # type: ignore[arg-type]
        protocol.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self) -> None:
        """uvicorn is stopping: nothing was asked on this connection yet."""
        if self._transport is not None:
            self._transport.close()


def front_protocol_class(
    channel_class: type[asyncio.Protocol], http_class: type[asyncio.Protocol]
) -> type[asyncio.Protocol]:
    """A uvicorn HTTP implementation (``uvicorn.Config(http=...)``) that
    hands a ``GET`` of ``channel_class``'s path straight to it, and every
    other connection to ``http_class``."""
    assert issubclass(channel_class, _ChannelProtocol)
    return type(
        "FrontProtocol",
        (_FrontProtocol,),
        {
            "channel_class": channel_class,
            "http_class": http_class,
            "request_line": b"GET " + channel_class.path.encode(),
            "__slots__": (),
        },
    )


def protocol_class(endpoint: WebSocketEndpoint, path: str) -> type[asyncio.Protocol]:
    """A uvicorn WebSocket implementation serving ``endpoint``'s node on
    ``path``: pass it as ``uvicorn.Config(ws=...)``."""
    return type(
        "ChannelProtocol",
        (_ChannelProtocol,),
        {"endpoint": endpoint, "path": path, "flusher": _Flusher(), "__slots__": ()},
    )
