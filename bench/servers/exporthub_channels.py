"""exporthub's channel server as the bench runs it.

A Starlette app with the channel server (:mod:`exporthub.realtime`) at
``/connection/websocket`` and a Centrifugo-shaped publish API
(``POST /api/publish {"channel", "data"}``, ``POST /api/broadcast
{"channels", "data"}``, header ``X-API-Key``), served by uvicorn with the
same settings as the python-socketio peer.

This file is the only part of the bench that knows how exporthub serves
publishing: :func:`publish_routes` is what to swap for exporthub's own server
API once it has one, and the runner needs nothing else changed.

Run: ``python bench/servers/exporthub_channels.py --port 18080``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common

common.use_repo_source()

import orjson  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import BaseRoute, Route, WebSocketRoute  # noqa: E402

from exporthub.realtime import (  # noqa: E402
    ChannelOptions,
    Node,
    NodeConfig,
    WebSocketEndpoint,
)


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def publish_routes(node: Node, api_key: str) -> list[BaseRoute]:
    """``/api/publish`` and ``/api/broadcast`` in Centrifugo's shapes."""

    def denied(request: Request) -> Response | None:
        if request.headers.get("x-api-key") != api_key:
            return _json({"error": {"code": 101, "message": "unauthorized"}}, 401)
        return None

    async def publish(request: Request) -> Response:
        refusal = denied(request)
        if refusal is not None:
            return refusal
        body = orjson.loads(await request.body())
        channel = body.get("channel")
        if not isinstance(channel, str) or node.channel_options(channel) is None:
            return _json({"error": {"code": 102, "message": "unknown channel"}})
        position = await node.publish(channel, orjson.dumps(body.get("data")))
        return _json({"result": {"offset": position.offset, "epoch": position.epoch}})

    async def broadcast(request: Request) -> Response:
        refusal = denied(request)
        if refusal is not None:
            return refusal
        body = orjson.loads(await request.body())
        channels = body.get("channels")
        if not isinstance(channels, list):
            return _json({"error": {"code": 107, "message": "bad request"}})
        # Encoded once: node.publish embeds bytes without re-encoding them.
        data = orjson.dumps(body.get("data"))
        responses = []
        for channel in channels:
            if not isinstance(channel, str) or node.channel_options(channel) is None:
                responses.append({"error": {"code": 102, "message": "unknown channel"}})
                continue
            position = await node.publish(channel, data)
            responses.append(
                {"result": {"offset": position.offset, "epoch": position.epoch}}
            )
        return _json({"result": {"responses": responses}})

    return [
        Route("/api/publish", publish, methods=["POST"]),
        Route("/api/broadcast", broadcast, methods=["POST"]),
    ]


def build_app(secret: str, api_key: str) -> Starlette:
    config = NodeConfig(
        namespaces={ns: ChannelOptions() for ns in common.NAMESPACES},
    )
    node = Node(config, secret=secret)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.shutdown()

    routes: list[BaseRoute] = [
        WebSocketRoute("/connection/websocket", WebSocketEndpoint(node)),
        *publish_routes(node, api_key),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=common.HOST)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    secret = os.environ.get("BENCH_SECRET", common.SECRET)
    api_key = os.environ.get("BENCH_API_KEY", common.API_KEY)
    app = build_app(secret, api_key)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=3,
        **common.uvicorn_options(),
    )


if __name__ == "__main__":
    main()
