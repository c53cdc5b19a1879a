"""exporthub serve exposes the Centrifugo-compatible server API when
EXPORTHUB_API_KEY is set, and only then."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from cent import AsyncClient, PublishRequest

from servers import run_server
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

API_KEY = "server-api-key-for-tests"


async def test_a_backend_publishes_to_a_users_channel_with_cent(tmp_path: Path) -> None:
    with run_server(tmp_path / "data", EXPORTHUB_API_KEY=API_KEY) as server:
        alice = server.create_user("alice@example.com")
        watcher = Watcher()
        client = make_client(
            server.ws_url, token_getter(server.url, alice["api_key"]), watcher
        )
        await client.connect()
        try:
            await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
            channel = f"user:{alice['uuid']}"
            api = AsyncClient(f"{server.url}/api", API_KEY)
            result = await api.publish(
                PublishRequest(channel=channel, data={"hello": "alice"})
            )
            await watcher.wait_for(lambda: watcher.on(channel) == [{"hello": "alice"}])
            assert result.offset == 1
            assert result.epoch == watcher.subscribed[channel].stream_position.epoch
        finally:
            await client.disconnect()


async def test_without_an_api_key_the_server_api_is_off(tmp_path: Path) -> None:
    with run_server(tmp_path / "data") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/api/publish",
                headers={"X-API-Key": "anything"},
                json={"channel": "user:x", "data": {}},
            )
    assert response.status_code == 404


async def test_metrics_report_connections_commands_publications_and_jobs(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path / "data") as server:
        alice = server.create_user("alice@example.com")
        watcher = Watcher()
        client = make_client(
            server.ws_url, token_getter(server.url, alice["api_key"]), watcher
        )
        await client.connect()
        try:
            await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
            async with httpx.AsyncClient(base_url=server.url) as http:
                created = await http.post(
                    "/api/v3/job",
                    headers={"X-AUTH-TOKEN": alice["api_key"]},
                    json={"url": "https://news.ycombinator.com/item?id=1"},
                )
                assert created.status_code == 201
                await watcher.wait_for(
                    lambda: len(watcher.on(f"exports:{alice['uuid']}")) >= 1
                )
                response = await http.get("/metrics")
        finally:
            await client.disconnect()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = set(response.text.splitlines())
    assert "exporthub_connections 1.0" in lines
    assert "exporthub_subscriptions 5.0" in lines
    connects = 'exporthub_client_command_duration_seconds_count{method="connect",'
    assert connects + 'outcome="ok"} 1.0' in lines
    assert 'exporthub_publications_total{namespace="exports"} 1.0' in lines
    assert 'exporthub_deliveries_total{namespace="exports"} 1.0' in lines
    jobs = [line for line in lines if line.startswith('exporthub_jobs{status="')]
    assert len(jobs) == 5
    assert sum(float(line.rsplit(" ", 1)[1]) for line in jobs) == 1.0


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("server-api") / "data"
    with run_server(data, EXPORTHUB_API_KEY=API_KEY) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "reply"),
    [
        (
            "/api/publish",
            {"X-API-Key": "wrong"},
            b'{"channel":"user:x","data":{}}',
            401,
            {"error": {"code": 101, "message": "unauthorized"}},
        ),
        (
            "/api/nosuchmethod",
            {"X-API-Key": API_KEY},
            b"{}",
            404,
            {"error": {"code": 104, "message": "not found"}},
        ),
        (
            "/api/publish",
            {"Authorization": f"apikey {API_KEY}"},
            b"not json",
            400,
            {"error": {"code": 107, "message": "bad request"}},
        ),
        (
            "/api/publish",
            {"X-API-Key": API_KEY},
            b'{"channel":"user:x","data":"' + b"x" * (1024 * 1024) + b'"}',
            413,
            {"error": {"code": 106, "message": "limit exceeded"}},
        ),
    ],
    ids=["wrong-key", "unknown-method", "not-json", "too-big"],
)
async def test_server_api_answers_through_exporthub_serve(
    api_server, path: str, headers: dict, body: bytes, status: int, reply: dict
) -> None:
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        response = await http.post(
            path, headers={**headers, "Content-Type": "application/json"}, content=body
        )
    assert (response.status_code, response.json()) == (status, reply)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))


async def test_a_publish_through_exporthub_serve_answers_its_position(
    api_server,
) -> None:
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        response = await http.post(
            "/api/publish",
            headers={"Authorization": f"apikey {API_KEY}"},
            json={"channel": "user:position", "data": {"n": 1}},
        )
    assert response.status_code == 200
    result = response.json()["result"]
    assert result == {"offset": 1, "epoch": result["epoch"]}
    assert re.fullmatch("[0-9a-f]{8}", result["epoch"])
