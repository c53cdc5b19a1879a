"""A local webhook endpoint for tests: records every request it gets.

It listens on 127.0.0.1, answers with the status codes it is told to (a
queue first, then a default), can hold every request until a gate opens,
answer with a redirect or an oversized body, speak TLS, and counts the TCP
connections it accepts, so a test can tell that nothing connected at all.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

LOOPBACK = "127.0.0.1"
HOOK_PATH = "/hook"
GATE_LIMIT = 30.0
"""Seconds a held request waits for its gate at most."""
WAIT = 20.0
POLL = 0.02


@dataclass(frozen=True)
class Received:
    """One request the receiver got and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return orjson.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["exporthub-delivery"]


@dataclass
class Receiver:
    """State shared with the server thread."""

    port: int = 0
    status: int = 200
    queue: list[int] = field(default_factory=list)
    gate: threading.Event | None = None
    location: str | None = None
    reply_size: int | None = None
    reply_cut: bool = False
    tls: ssl.SSLContext | None = None
    requests: list[Received] = field(default_factory=list)
    arrived: int = 0
    connections: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}{HOOK_PATH}"

    def answer(self) -> int:
        with self._lock:
            return self.queue.pop(0) if self.queue else self.status

    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx, in arrival order."""
        return [r for r in self.requests if 200 <= r.answered < 300]

    def start(self) -> None:
        server = ThreadingHTTPServer((LOOPBACK, self.port), _handler(self))
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = WAIT
    ) -> None:
        """Wait until ``predicate()`` holds; fail with what did arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            if loop.time() > deadline:
                seen = [(r.answered, r.body) for r in self.requests]
                raise AssertionError(f"timed out; the receiver got {seen!r}")
            await asyncio.sleep(POLL)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            with receiver._lock:
                receiver.connections += 1
            super().setup()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver._lock:
                receiver.arrived += 1
            if receiver.gate is not None:
                receiver.gate.wait(GATE_LIMIT)
            status = receiver.answer()
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.requests.append(Received(headers, body, status))
            reply = b'{"ok": true}'
            if receiver.reply_size is not None:
                reply = b"x" * receiver.reply_size
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            if receiver.location is not None:
                self.send_header("Location", receiver.location)
            self.end_headers()
            try:
                self.wfile.write(reply)
            except OSError:
                # The client hung up before taking the whole answer.
                receiver.reply_cut = True

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def serve_receiver(**options: Any) -> Iterator[Receiver]:
    """Run a receiver on a free loopback port (or ``port=``) for the duration."""
    receiver = Receiver(**options)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
