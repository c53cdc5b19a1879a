"""The main path end to end: a Hacker News thread exported while the
unmodified centrifuge-python client watches, on a real server process."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import jwt
import openpyxl
import orjson
import pytest

from hn_fixture import EXPECTED_ROWS, STORY_ID
from servers import run_server
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SECRET = "test-secret-of-sufficient-length-0123456789"
STORY_URL = f"https://news.ycombinator.com/item?id={STORY_ID}"
HEADER = ["ID", "Parent ID", "Depth", "Author", "Published (UTC)", "Text", "Permalink"]
PROGRESS_INTERVAL = 0.3


@pytest.fixture
def server(tmp_path: Path, hn):
    with run_server(
        tmp_path / "data",
        EXPORTHUB_HACKERNEWS_API=hn.base_url,
        EXPORTHUB_PROGRESS_INTERVAL=str(PROGRESS_INTERVAL),
    ) as running:
        yield running


def personal(uuid: str) -> list[str]:
    return [
        f"user:{uuid}",
        f"exports:{uuid}",
        f"webhooks:{uuid}",
        f"user_notifications_channel:{uuid}",
        f"user_dashboard_channel:{uuid}",
    ]


def events_of(messages: list[dict]) -> list[str]:
    return [m["event"] for m in messages]


async def test_socket_token_carries_the_five_personal_channels(server) -> None:
    alice = server.create_user("alice@example.com")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/api/public/auth/socket", headers={"X-AUTH-TOKEN": alice["api_key"]}
        )
    assert response.status_code == 200
    token = response.json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == alice["uuid"]
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert claims["channels"] == personal(alice["uuid"])


async def test_user_create_stores_only_a_hash_of_the_api_key(server) -> None:
    alice = server.create_user("alice@example.com")
    [row] = server.rows("users")
    assert alice["uuid"] in row
    assert alice["api_key"] not in row
    assert hashlib.sha256(alice["api_key"].encode()).hexdigest() in row


async def test_a_thread_exports_while_the_client_watches_every_step(server, hn) -> None:
    alice = server.create_user("alice@example.com")
    watcher = Watcher()
    client = make_client(
        server.ws_url, token_getter(server.url, alice["api_key"]), watcher
    )
    held = hn.hold(9003)  # the last top-level comment: the job waits there
    await client.connect()
    try:
        await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
        assert sorted(watcher.subscribed) == sorted(personal(alice["uuid"]))

        async with httpx.AsyncClient(base_url=server.url) as http:
            headers = {"X-AUTH-TOKEN": alice["api_key"]}
            created = await http.post(
                "/api/v3/job", headers=headers, json={"url": STORY_URL}
            )
            assert created.status_code == 201
            job = created.json()
            guid = job["guid"]
            assert job["status"] == "queueing"
            assert job["url"] == STORY_URL
            assert job["options"] == {}
            assert isinstance(job["id"], int)
            assert job["created_at"] and job["updated_at"]

            job_channel = f"export.{guid}.job"
            subscription = client.new_subscription(
                job_channel, events=watcher.subscription_handler(job_channel)
            )
            await subscription.subscribe()

            exports = f"exports:{alice['uuid']}"
            await watcher.wait_for(
                lambda: any(
                    m["event"] == "job.progress" and m["current"] == 4
                    for m in watcher.on(exports)
                )
            )
            held.set()
            await watcher.wait_for(
                lambda: (
                    "job.finished" in events_of(watcher.on(exports))
                    and "job.finished" in events_of(watcher.on(job_channel))
                )
            )

            received = watcher.on(exports)
            assert received[0] == {
                "version": "v3-beta",
                "event": "job.created",
                "guid": guid,
                "status": "queueing",
                "url": None,
                "details": {
                    "id": job["id"],
                    "guid": guid,
                    "status": "queueing",
                    "url": STORY_URL,
                },
            }
            progress = received[1:-1]
            assert {m["event"] for m in progress} == {"job.progress"}
            counts = [m["current"] for m in progress]
            # Four comments come before the held one. A tick may fall while
            # fewer are written, or after the fifth: counts only grow.
            assert counts == sorted(set(counts))
            assert 4 in counts
            assert set(counts) <= {1, 2, 3, 4, 5}
            assert progress[counts.index(4)] == {
                "version": "v3-beta",
                "event": "job.progress",
                "guid": guid,
                "status": "progress",
                "url": None,
                "current": 4,
                "total": 5,
                "details": {
                    "id": job["id"],
                    "guid": guid,
                    "status": "progress",
                    "url": STORY_URL,
                    "totalExported": 4,
                    "total": 5,
                },
            }

            finished = received[-1]
            xlsx_url = finished["url"]
            json_url = finished["details"]["json_url"]
            assert finished == {
                "version": "v3-beta",
                "event": "job.finished",
                "guid": guid,
                "status": "done",
                "url": xlsx_url,
                "details": {
                    "id": job["id"],
                    "guid": guid,
                    "status": "done",
                    "url": STORY_URL,
                    "totalExported": 5,
                    "total": 5,
                    "download_link": xlsx_url,
                    "json_url": json_url,
                },
            }
            # The job channel saw the same events from its subscription on.
            on_job = watcher.on(job_channel)
            assert on_job == received[len(received) - len(on_job) :]
            assert on_job[-1]["event"] == "job.finished"

            assert xlsx_url.startswith(f"{server.url}/download/")
            assert xlsx_url.endswith(f"/hackernews-{guid}.xlsx")
            token = xlsx_url.split("/")[-2]
            assert len(token) >= 32

            workbook_bytes = (await http.get(xlsx_url)).content
            sheet = openpyxl.load_workbook(io.BytesIO(workbook_bytes)).active
            rows = [list(r) for r in sheet.iter_rows(values_only=True)]
            assert rows[0] == [*HEADER, "Replies"]
            assert rows[1:] == [
                [
                    r["id"],
                    r["parent_id"],
                    r["depth"],
                    r["author"],
                    r["published_at"],
                    r["text"],
                    r["permalink"],
                    r["replies"],
                ]
                for r in EXPECTED_ROWS
            ]

            records = orjson.loads((await http.get(json_url)).content)
            assert records == EXPECTED_ROWS

            stored = (await http.get(f"/api/v3/job/{guid}", headers=headers)).json()
            assert stored["status"] == "done"
            assert stored["download_link"] == xlsx_url
            assert stored["json_url"] == json_url
            assert stored["total_exported"] == 5
            assert stored["total"] == 5

            guessed = xlsx_url.replace(token, "A" * len(token))
            assert (await http.get(guessed)).status_code == 404
    finally:
        await client.disconnect()


async def test_a_missing_story_fails_with_the_reason(server, hn) -> None:
    del hn.items[STORY_ID]  # the real API answers null for unknown items
    alice = server.create_user("alice@example.com")
    watcher = Watcher()
    client = make_client(
        server.ws_url, token_getter(server.url, alice["api_key"]), watcher
    )
    await client.connect()
    try:
        await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
        async with httpx.AsyncClient(base_url=server.url) as http:
            job = (
                await http.post(
                    "/api/v3/job",
                    headers={"X-AUTH-TOKEN": alice["api_key"]},
                    json={"url": STORY_URL},
                )
            ).json()
        exports = f"exports:{alice['uuid']}"
        await watcher.wait_for(lambda: len(watcher.on(exports)) == 2)
        created, failed = watcher.on(exports)
        assert created["event"] == "job.created"
        assert failed == {
            "version": "v3-beta",
            "event": "job.failed",
            "guid": job["guid"],
            "status": "error",
            "url": None,
            "details": {
                "id": job["id"],
                "guid": job["guid"],
                "status": "error",
                "url": STORY_URL,
                "error": f"Hacker News item {STORY_ID} does not exist",
                "totalExported": 0,
            },
        }
    finally:
        await client.disconnect()
