"""The python-socketio peer: what a Python team would otherwise deploy.

An ``AsyncServer`` (ASGI) under uvicorn with the same settings as exporthub.
Channels are rooms. A client sends its connection JWT in the Socket.IO
``auth`` payload; the connect handler verifies it with PyJWT exactly as
exporthub does (HS256, ``sub`` required, ``exp`` checked) and joins the
rooms listed in its ``channels`` claim before the connect is acknowledged.
A publication reaches a room as the event ``pub`` with body
``{"channel", "data"}``. The publish API has exporthub's shapes.

Run: ``python bench/peers/python_socketio_server.py --port 18081``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common
import jwt
import orjson
import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def build_app(secret: str, api_key: str) -> socketio.ASGIApp:
    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=["websocket"],
        ping_interval=25,
        ping_timeout=20,
        cors_allowed_origins=[],
        logger=False,
        engineio_logger=False,
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("token required")
        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": ["sub"]}
            )
        except jwt.InvalidTokenError as exc:
            raise socketio.exceptions.ConnectionRefusedError("invalid token") from exc
        channels = claims.get("channels", [])
        if not isinstance(claims.get("sub"), str) or not isinstance(channels, list):
            raise socketio.exceptions.ConnectionRefusedError("invalid claims")
        for channel in channels:
            if isinstance(channel, str) and channel:
                await sio.enter_room(sid, channel)

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
        if not isinstance(channel, str):
            return _json({"error": {"code": 107, "message": "bad request"}})
        await sio.emit(
            "pub", {"channel": channel, "data": body.get("data")}, to=channel
        )
        return _json({"result": {}})

    async def broadcast(request: Request) -> Response:
        refusal = denied(request)
        if refusal is not None:
            return refusal
        body = orjson.loads(await request.body())
        channels = body.get("channels")
        if not isinstance(channels, list):
            return _json({"error": {"code": 107, "message": "bad request"}})
        data = body.get("data")
        for channel in channels:
            await sio.emit("pub", {"channel": channel, "data": data}, to=channel)
        return _json({"result": {"responses": [{"result": {}}] * len(channels)}})

    api = Starlette(
        routes=[
            Route("/api/publish", publish, methods=["POST"]),
            Route("/api/broadcast", broadcast, methods=["POST"]),
        ]
    )
    return socketio.ASGIApp(sio, other_asgi_app=api)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=common.HOST)
    parser.add_argument("--port", type=int, default=18081)
    args = parser.parse_args()
    secret = os.environ.get("BENCH_SECRET", common.SECRET)
    api_key = os.environ.get("BENCH_API_KEY", common.API_KEY)
    uvicorn.run(
        build_app(secret, api_key),
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=3,
        **common.uvicorn_options(),
    )


if __name__ == "__main__":
    main()
