"""Platforms other than Hacker News through the whole service: detection,
configuration errors, and an export whose XLSX has the platform's columns."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import openpyxl
import pytest

import test_sources_github as github
from fixture_servers import serve
from servers import run_server
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ISSUE_URL = f"https://github.com/{github.OWNER}/{github.REPO}/issues/{github.NUMBER}"


async def test_a_youtube_url_without_an_api_key_is_refused_clearly(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path / "data") as server:
        alice = server.create_user("alice@example.com")
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/api/v3/job",
                headers={"X-AUTH-TOKEN": alice["api_key"]},
                json={"url": "https://www.youtube.com/watch?v=M7lc1UVf-VE"},
            )
            listed = (
                await http.get(
                    "/api/v3/jobs", headers={"X-AUTH-TOKEN": alice["api_key"]}
                )
            ).json()
    assert response.status_code == 422
    assert response.json() == {
        "error": "YouTube exports need an API key: the operator must set "
        "EXPORTHUB_YOUTUBE_API_KEY",
        "error_code": "platform_not_configured",
    }
    assert listed["meta"]["total"] == 0


async def test_every_platform_is_listed_with_its_url_patterns(tmp_path: Path) -> None:
    with run_server(tmp_path / "data") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            listed = (await http.get("/api/v3/platforms")).json()["platforms"]
    assert [p["key"] for p in listed] == [
        "hackernews",
        "youtube",
        "reddit",
        "bluesky",
        "github",
        "mastodon",
    ]
    assert all(p["examples"] and p["url_patterns"] for p in listed)


async def test_a_github_issue_exports_with_likes_in_the_xlsx(tmp_path: Path) -> None:
    with (
        serve(github.APP) as fixture,
        run_server(tmp_path / "data", EXPORTHUB_GITHUB_API=fixture.base_url) as server,
    ):
        alice = server.create_user("alice@example.com")
        watcher = Watcher()
        client = make_client(
            server.ws_url, token_getter(server.url, alice["api_key"]), watcher
        )
        await client.connect()
        try:
            await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
            async with httpx.AsyncClient(
                base_url=server.url, headers={"X-AUTH-TOKEN": alice["api_key"]}
            ) as http:
                job = (await http.post("/api/v3/job", json={"url": ISSUE_URL})).json()
                assert job["platform"] == "github"
                exports = f"exports:{alice['uuid']}"
                await watcher.wait_for(
                    lambda: any(
                        m["event"] in ("job.finished", "job.failed")
                        for m in watcher.on(exports)
                    )
                )
                finished = watcher.on(exports)[-1]
                assert finished["event"] == "job.finished", finished
                workbook = (await http.get(finished["url"])).content
        finally:
            await client.disconnect()
    rows = list(openpyxl.load_workbook(io.BytesIO(workbook)).active.values)
    assert rows[0] == (
        "ID",
        "Parent ID",
        "Depth",
        "Author",
        "Published (UTC)",
        "Text",
        "Permalink",
        "Likes",
    )
    assert [row[0] for row in rows[1:]] == [str(c["id"]) for c in github.COMMENTS]
    assert finished["details"]["totalExported"] == len(github.COMMENTS)
