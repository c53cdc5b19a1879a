"""A lean WebSocket client (RFC 6455) as a bare asyncio protocol.

The load generator keeps thousands of connections per process on a machine
whose cores it shares with the server under test, so every microsecond the
client spends per frame is taken from the server. This client does only
what the bench needs: the opening handshake, unmasked server frames, masked
client frames, ping/pong and the closing handshake. No extensions are asked
for, so frames never arrive compressed. Text payloads are handed over as
bytes, not decoded, because orjson parses bytes directly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from typing import cast

try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - the C extension ships with wheels
    _c_apply_mask = None

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16 * 1024
# Linux: bind() picks no port until connect(), so source addresses can share
# the ephemeral range per destination instead of per address.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(Exception):
    """The server did not switch protocols."""


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if _c_apply_mask is not None:
        return _c_apply_mask(data, mask)
    n = len(data)
    repeated = (mask * (n // 4 + 1))[:n]
    value = int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    head = bytearray((0x80 | opcode,))
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    mask = os.urandom(4)
    return bytes(head) + mask + apply_mask(payload, mask)


class WebSocketClient(asyncio.Protocol):
    """One connection; subclasses override :meth:`on_open` and
    :meth:`on_message`. ``done`` resolves with the close code once the TCP
    connection is gone; ``error`` says why the handshake failed, if it did."""

    def __init__(self, host: str, path: str) -> None:
        self._host = host
        self._path = path
        self._key = base64.b64encode(os.urandom(16))
        self._buf = bytearray()
        self._is_open = False
        self._fragments: list[bytes] | None = None
        self._close_sent = False
        self.close_code: int | None = None
        self.error: Exception | None = None
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int | None] = loop.create_future()

    # -- asyncio callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        request = (
            b"GET " + self._path.encode() + b" HTTP/1.1\r\n"
            b"Host: " + self._host.encode() + b"\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self._key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._is_open and not self._finish_handshake():
            return
        self._parse_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self._is_open = False
        if exc is not None and self.error is None:
            self.error = exc
        if not self.done.done():
            self.done.set_result(self.close_code)
        self.on_closed()

    # -- hooks -------------------------------------------------------------

    def on_open(self) -> None:
        """The handshake is done."""

    def on_message(self, payload: bytes) -> None:
        """A whole text or binary message arrived."""

    def on_closed(self) -> None:
        """The connection is gone, for whatever reason."""

    # -- sending -----------------------------------------------------------

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        if self.transport is not None and not self._close_sent:
            self.transport.write(encode_frame(opcode, payload))

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; the server closes TCP first, so the
        TIME_WAIT state stays on its side and not on our ephemeral ports."""
        if self.transport is None or self._close_sent:
            return
        self.transport.write(encode_frame(OP_CLOSE, struct.pack("!H", code)))
        self._close_sent = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- parsing -----------------------------------------------------------

    def _finish_handshake(self) -> bool:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._fail(HandshakeError("response head too large"))
            return False
        head = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail(HandshakeError(lines[0]))
            return False
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest())
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != expected:
            self._fail(HandshakeError("bad Sec-WebSocket-Accept"))
            return False
        self._is_open = True
        self.on_open()
        return True

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        if self.transport is not None:
            self.transport.abort()

    def _parse_frames(self) -> None:
        buf = self._buf
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                start = pos + 10
            if b1 & 0x80:
                # A server must not mask; treat it as a broken peer.
                self._fail(ConnectionError("masked frame from server"))
                return
            end = start + length
            if end > size:
                break
            payload = bytes(buf[start:end])
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if b0 & 0x80:
                    self.on_message(payload)
                else:
                    self._fragments = [payload]
            elif opcode == OP_CONT:
                if self._fragments is not None:
                    self._fragments.append(payload)
                    if b0 & 0x80:
                        whole = b"".join(self._fragments)
                        self._fragments = None
                        self.on_message(whole)
            elif opcode == OP_PING:
                self.send(payload, OP_PONG)
            elif opcode == OP_CLOSE:
                self._on_close_frame(payload)
                break
        if pos:
            del buf[:pos]

    def _on_close_frame(self, payload: bytes) -> None:
        self.close_code = (
            struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
        )
        if not self._close_sent and self.transport is not None:
            self.transport.write(encode_frame(OP_CLOSE, payload[:2]))
            self._close_sent = True
        self._is_open = False
        if self.transport is not None:
            self.transport.close()


async def open_socket(host: str, port: int, source: str) -> socket.socket:
    """A connected, non-blocking TCP socket from ``source`` (a loopback
    address) to ``host:port``; the caller bounds the wait."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock
