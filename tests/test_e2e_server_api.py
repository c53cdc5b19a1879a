"""exporthub serve exposes the Centrifugo-compatible server API when
EXPORTHUB_API_KEY is set, and only then."""

from __future__ import annotations

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
