"""Serving the application with uvicorn, with a shutdown clients understand.

On SIGTERM uvicorn stops listening, then closes every open WebSocket with
code 1012, and only afterwards runs the application's shutdown. Clients of
the Centrifugo protocol expect 3001 ("shutdown") from a node that goes away,
so :class:`GracefulServer` lets the application say it first: it stops
listening, runs the application's ``drain`` hook (which closes every
connection with 3001), and then lets uvicorn carry on as usual.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from exporthub.config import Settings
from exporthub.realtime.direct import front_protocol_class, protocol_class

if TYPE_CHECKING:
    from exporthub.api.app import FrontDoor

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_TIMEOUT = 15
"""Seconds uvicorn waits for requests in progress before cancelling them."""
LISTEN_BACKLOG = 4096

Drain = Callable[[], Awaitable[None]]


class GracefulServer(uvicorn.Server):
    """A uvicorn server that runs ``drain`` before closing connections.

    Args:
        config: the uvicorn configuration.
        drain: closes the application's connections its own way.
    """

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first, so that no client connects after the drain.
        for server in self.servers:
            server.close()
        try:
            await self._drain()
        except Exception:
            logger.exception("draining connections failed")
        await super().shutdown(sockets)


def websocket_protocol(app: Starlette | FrontDoor) -> str | type[Any]:
    """What uvicorn serves WebSockets with: the channel server's own
    protocol (:mod:`exporthub.realtime.direct`) when the app has one,
    otherwise the websockets library's sans-I/O implementation."""
    endpoint = getattr(app.state, "websocket_endpoint", None)
    if endpoint is None:
        return "websockets-sansio"
    return protocol_class(endpoint, app.state.websocket_path)


def http_protocol(ws: str | type[Any]) -> str | type[Any]:
    """What uvicorn serves connections with: with the channel server's own
    WebSocket protocol, a front that hands it its requests unparsed
    (:func:`~exporthub.realtime.direct.front_protocol_class`)."""
    if isinstance(ws, str):
        return "auto"
    return front_protocol_class(ws, AutoHTTPProtocol)


def serve(app: Starlette | FrontDoor, host: str, port: int, settings: Settings) -> None:
    """Serve ``app`` (its ``state`` holds the channel server's endpoint as
    ``websocket_endpoint``) until SIGTERM or SIGINT, then shut down
    gracefully."""

    async def drain() -> None:
        endpoint = getattr(app.state, "websocket_endpoint", None)
        if endpoint is not None:
            await endpoint.drain(settings.drain_timeout)

    ws = websocket_protocol(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=http_protocol(ws),
        ws=ws,
        # The channel server pings at the protocol level; frames over its
        # limit are refused by the session with a clear close code.
        ws_ping_interval=None,
        ws_max_size=settings.max_frame_bytes * 2,
        # Room for a storm of reconnecting clients after a restart.
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_TIMEOUT,
    )
    GracefulServer(config, drain).run()
