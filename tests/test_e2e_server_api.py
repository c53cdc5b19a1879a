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
