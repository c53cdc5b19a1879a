"""Job routes on a real server: read, list, stop, retry, and the socket
token's job channels."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest

from hn_fixture import STORY_ID, THREAD
from servers import run_server
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SECRET = "test-secret-of-sufficient-length-0123456789"
STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"


@pytest.fixture
def server(tmp_path: Path, hn):
    with run_server(
        tmp_path / "data",
        EXPORTHUB_HACKERNEWS_API=hn.base_url,
        EXPORTHUB_PROGRESS_INTERVAL="0.2",
    ) as running:
        yield running


async def watch(server, user):
    watcher = Watcher()
    client = make_client(
        server.ws_url, token_getter(server.url, user["api_key"]), watcher
    )
    await client.connect()
    await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
    return watcher, client


def events(watcher: Watcher, user) -> list[tuple[str, str]]:
    return [(m["event"], m["status"]) for m in watcher.on(f"exports:{user['uuid']}")]


async def test_stopping_a_running_job_ends_it_with_status_stopped(server, hn) -> None:
    alice = server.create_user("alice@example.com")
    hn.hold(9003)
    watcher, client = await watch(server, alice)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            headers = {"X-AUTH-TOKEN": alice["api_key"]}
            job = (
                await http.post("/api/v3/job", headers=headers, json={"url": STORY_URL})
            ).json()
            await watcher.wait_for(
                lambda: ("job.progress", "progress") in events(watcher, alice)
            )
            stopped = await http.patch(
                f"/api/v3/job/{job['guid']}/stop", headers=headers
            )
            assert stopped.status_code == 200
            assert stopped.json()["status"] == "stopped"
            await watcher.wait_for(
                lambda: ("job.failed", "stopped") in events(watcher, alice)
            )
            failed = watcher.on(f"exports:{alice['uuid']}")[-1]
            assert failed["details"]["error"] == "stopped by the user"
            again = await http.patch(f"/api/v3/job/{job['guid']}/stop", headers=headers)
            assert again.status_code == 409
            assert again.json()["error_code"] == "conflict"
            current = (
                await http.get(f"/api/v3/job/{job['guid']}", headers=headers)
            ).json()
            assert current["status"] == "stopped"
            assert current["download_link"] is None
        assert not (server.data_dir / "files" / job["guid"]).exists()
    finally:
        await client.disconnect()


async def test_a_failed_job_retried_goes_back_to_queueing_and_finishes(
    server, hn
) -> None:
    alice = server.create_user("alice@example.com")
    del hn.items[STORY_ID]
    watcher, client = await watch(server, alice)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            headers = {"X-AUTH-TOKEN": alice["api_key"]}
            job = (
                await http.post("/api/v3/job", headers=headers, json={"url": STORY_URL})
            ).json()
            await watcher.wait_for(
                lambda: ("job.failed", "error") in events(watcher, alice)
            )
            hn.items[STORY_ID] = THREAD[STORY_ID]
            retried = await http.patch(
                f"/api/v3/job/{job['guid']}/retry", headers=headers
            )
            assert retried.status_code == 200
            assert retried.json()["status"] == "queueing"
            await watcher.wait_for(
                lambda: ("job.finished", "done") in events(watcher, alice)
            )
            seen = [e for e in events(watcher, alice) if e[0] != "job.progress"]
            assert seen == [
                ("job.created", "queueing"),
                ("job.failed", "error"),
                ("job.requeued", "queueing"),
                ("job.finished", "done"),
            ]
            done = (
                await http.get(f"/api/v3/job/{job['guid']}", headers=headers)
            ).json()
            assert done["total_exported"] == 5
            refused = await http.patch(
                f"/api/v3/job/{job['guid']}/retry", headers=headers
            )
            assert refused.status_code == 409
    finally:
        await client.disconnect()


async def test_jobs_are_listed_newest_first_in_pages(server) -> None:
    alice = server.create_user("alice@example.com")
    bob = server.create_user("bob@example.com")
    async with httpx.AsyncClient(base_url=server.url) as http:
        guids = []
        for n in range(3):
            url = f"https://news.ycombinator.com/item?id={100 + n}"
            response = await http.post(
                "/api/v3/job",
                headers={"X-AUTH-TOKEN": alice["api_key"]},
                json={"url": url},
            )
            guids.append(response.json()["guid"])
        await http.post(
            "/api/v3/job",
            headers={"X-AUTH-TOKEN": bob["api_key"]},
            json={"url": STORY_URL},
        )
        first = (
            await http.get(
                "/api/v3/jobs?per_page=2", headers={"X-AUTH-TOKEN": alice["api_key"]}
            )
        ).json()
        second = (
            await http.get(
                "/api/v3/jobs?per_page=2&page=2",
                headers={"X-AUTH-TOKEN": alice["api_key"]},
            )
        ).json()
    assert [j["guid"] for j in first["data"]] == [guids[2], guids[1]]
    assert [j["guid"] for j in second["data"]] == [guids[0]]
    assert first["meta"] == {"page": 1, "per_page": 2, "total": 3, "pages": 2}


async def test_the_socket_token_adds_the_users_own_job_channels(server) -> None:
    alice = server.create_user("alice@example.com")
    bob = server.create_user("bob@example.com")
    async with httpx.AsyncClient(base_url=server.url) as http:
        job = (
            await http.post(
                "/api/v3/job",
                headers={"X-AUTH-TOKEN": alice["api_key"]},
                json={"url": STORY_URL},
            )
        ).json()
        mine = await http.post(
            "/api/public/auth/socket",
            headers={"X-AUTH-TOKEN": alice["api_key"]},
            json={"jobs": [job["guid"]]},
        )
        theirs = await http.post(
            "/api/public/auth/socket",
            headers={"X-AUTH-TOKEN": bob["api_key"]},
            json={"jobs": [job["guid"]]},
        )
    claims = jwt.decode(mine.json()["token"], SECRET, algorithms=["HS256"])
    assert claims["channels"][-1] == f"export.{job['guid']}.job"
    assert len(claims["channels"]) == 6
    assert theirs.status_code == 403
    assert theirs.json() == {
        "error": f"job {job['guid']} belongs to another user",
        "error_code": "forbidden",
    }


async def test_another_users_job_is_not_found(server) -> None:
    alice = server.create_user("alice@example.com")
    bob = server.create_user("bob@example.com")
    async with httpx.AsyncClient(base_url=server.url) as http:
        job = (
            await http.post(
                "/api/v3/job",
                headers={"X-AUTH-TOKEN": alice["api_key"]},
                json={"url": STORY_URL},
            )
        ).json()
        response = await http.get(
            f"/api/v3/job/{job['guid']}", headers={"X-AUTH-TOKEN": bob["api_key"]}
        )
    assert response.status_code == 404
    assert response.json() == {
        "error": f"no job {job['guid']}",
        "error_code": "not_found",
    }
