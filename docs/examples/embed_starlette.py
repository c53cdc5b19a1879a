"""Embed the channel server in an existing Starlette app.

The app keeps its own routes and adds three things: the WebSocket endpoint
that Centrifugo clients connect to, the server API under ``/api/``, and a
token endpoint of its own. Who may subscribe to what, from the client side,
is its own rule (``can_subscribe``).

Run it from the repository root::

    PYTHONPATH=src python docs/examples/embed_starlette.py --port 8000 \\
        --secret change-me --api-key change-me-too

then connect any Centrifugo client to ``ws://127.0.0.1:8000/connection/websocket``
with a token from ``POST /token``, and publish with any server API client
(``cent``) to ``http://127.0.0.1:8000/api``. Without ``--api-key`` the
server API is off.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from exporthub.realtime import (
    ChannelOptions,
    HistoryOptions,
    Node,
    NodeConfig,
    ServerAPI,
    WebSocketEndpoint,
    issue_token,
)

TOKEN_TTL = 3600
"""Seconds a connection token from ``/token`` is valid."""

NAMESPACES = {
    # Keeps the last 100 publications for 10 minutes, so clients recover
    # what they missed while reconnecting.
    "news": ChannelOptions(history=HistoryOptions(size=100, ttl=600)),
    # Who is here, and join/leave pushes for subscribers that ask for them.
    "room": ChannelOptions(presence=True, join_leave=True),
    # Join/leave pushed to every subscriber, server-side ones included.
    "lobby": ChannelOptions(presence=True, join_leave=True, force_push_join_leave=True),
    # One per user, subscribed from the server side through the token.
    "personal": ChannelOptions(presence=True),
}


async def can_subscribe(user: str, channel: str) -> bool:
    """The app's rule for client-side subscriptions made without a token."""
    namespace, _, name = channel.partition(":")
    if namespace in ("news", "room", "lobby"):
        return user != ""
    if namespace == "personal":
        return name == user
    return False


def create_app(secret: str, api_key: str | None) -> Starlette:
    """The app, with the channel server mounted.

    Args:
        secret: HMAC secret of connection tokens.
        api_key: key of the server API; None turns the API off.
    """
    node = Node(NodeConfig(namespaces=NAMESPACES), secret, can_subscribe=can_subscribe)
    api = ServerAPI(node, api_key)

    async def home(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def token(request: Request) -> Response:
        # A stand-in for the app's login: a real app takes the user from its
        # authenticated session, never from what the caller claims.
        try:
            body = await request.json()
        except ValueError:
            body = None
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not user:
            return JSONResponse({"error": "user required"}, status_code=400)
        connection_token = issue_token(
            secret, user, ttl=TOKEN_TTL, channels=[f"personal:{user}"]
        )
        return JSONResponse({"token": connection_token})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.shutdown()

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/token", token, methods=["POST"]),
            WebSocketRoute("/connection/websocket", WebSocketEndpoint(node)),
            *api.routes,
        ],
        lifespan=lifespan,
    )
    app.state.node = node
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--secret",
        default=os.environ.get("EXAMPLE_TOKEN_SECRET") or secrets.token_urlsafe(32),
        help="token secret (default: $EXAMPLE_TOKEN_SECRET, else random)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("EXAMPLE_API_KEY"),
        help="server API key (default: $EXAMPLE_API_KEY, else the API is off)",
    )
    args = parser.parse_args()
    app = create_app(args.secret, args.api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
