"""Local stand-ins for the platforms' APIs.

:func:`serve` runs a Starlette app under uvicorn on 127.0.0.1, on a port the
kernel picks, in a background thread, and records every request it answers
so tests can check what an adapter asked for. Each platform's test module
builds its app from the real API's response shapes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.01


@dataclass(frozen=True)
class Seen:
    """One request the fixture server answered."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FixtureServer:
    """A running fixture server: its base URL and the requests it saw."""

    base_url: str
    requests: list[Seen] = field(default_factory=list)

    def paths(self) -> list[str]:
        """The paths requested, in order."""
        return [seen.path for seen in self.requests]

    def to(self, path: str) -> list[Seen]:
        """The requests made to ``path``."""
        return [seen for seen in self.requests if seen.path == path]


class _Recorder:
    """ASGI middleware noting each HTTP request before the app answers it."""

    def __init__(self, app: ASGIApp, log: list[Seen]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            self.log.append(
                Seen(
                    path=request.url.path,
                    params=dict(request.query_params),
                    headers={k.lower(): v for k, v in request.headers.items()},
                )
            )
        await self.app(scope, receive, send)


@contextmanager
def serve(app: ASGIApp) -> Iterator[FixtureServer]:
    """Run ``app`` on a loopback port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    fixture = FixtureServer(base_url=f"http://{LOOPBACK}:{port}")
    config = uvicorn.Config(
        _Recorder(app, fixture.requests),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fixture server did not start")
            time.sleep(POLL_INTERVAL)
        yield fixture
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        sock.close()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer with the exact bytes orjson writes."""
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers=headers,
    )
