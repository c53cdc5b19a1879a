"""Smoke test of the bench's protocol clients against the servers it runs.

The load generator speaks the Centrifugo and Socket.IO protocols with its
own lean clients; this checks, in-process and on loopback, that they really
connect (JWT, five server-side subscriptions) and receive a publication from
the publish API. No timing is asserted: the bench measures, tests only check.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
from protocols import CentrifugoClient, Recorder, SocketIOClient  # noqa: E402
from wsclient import open_socket  # noqa: E402

from servers import run_server  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def _load(relative: str) -> ModuleType:
    path = BENCH / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _serve(app: Any) -> AsyncIterator[int]:
    config = uvicorn.Config(
        app, host=common.HOST, port=0, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
def exporthub_port(tmp_path: Path) -> Iterator[int]:
    # The real server, as the bench's launcher starts it.
    with run_server(
        tmp_path / "data",
        EXPORTHUB_TOKEN_SECRET=common.SECRET,
        EXPORTHUB_API_KEY=common.API_KEY,
    ) as server:
        yield server.port


@pytest.fixture
async def socketio_port() -> AsyncIterator[int]:
    module = _load("peers/python_socketio_server.py")
    async for port in _serve(module.build_app(common.SECRET, common.API_KEY)):
        yield port


async def _roundtrip(client_class: type, port: int) -> Recorder:
    from exporthub.realtime.tokens import issue

    user = common.user_name(7)
    channels = common.personal_channels(user)
    token = issue(common.SECRET, user, ttl=60, channels=channels)
    recorder = Recorder()
    recorder.reset(active=True)
    loop = asyncio.get_running_loop()
    sock = await open_socket(common.HOST, port, "127.0.0.1")
    _, client = await loop.create_connection(
        lambda: client_class(f"{common.HOST}:{port}", recorder, token, channels),
        sock=sock,
    )
    await asyncio.wait_for(client.ready, 10)
    async with httpx.AsyncClient(
        base_url=f"http://{common.HOST}:{port}",
        headers={"X-API-Key": common.API_KEY},
    ) as http:
        body = {"channels": [f"exports:{user}", "exports:nobody"], "data": {}}
        body["data"] = common.payload(1, time.time())
        response = await http.post("/api/broadcast", json=body)
        assert response.status_code == 200
        for _ in range(250):
            if recorder.count:
                break
            await asyncio.sleep(0.02)
    client.close()
    await asyncio.wait_for(client.done, 10)
    return recorder


async def test_centrifugo_client_against_exporthub(exporthub_port: int) -> None:
    recorder = await _roundtrip(CentrifugoClient, exporthub_port)
    assert recorder.count == 1
    assert list(recorder.seqs) == [1]


async def test_socketio_client_against_python_socketio(socketio_port: int) -> None:
    recorder = await _roundtrip(SocketIOClient, socketio_port)
    assert recorder.count == 1


async def test_publish_api_needs_the_key(exporthub_port: int) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://{common.HOST}:{exporthub_port}"
    ) as h:
        response = await h.post("/api/publish", json={"channel": "exports:u1"})
    assert response.status_code == 401
