"""Every channel of the contract, live: scripted job runs on a real server,
watched by the real centrifuge-python client."""

from __future__ import annotations

import asyncio
import io
import subprocess
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from following import create_job, wait_for_status
from hn_fixture import serve_hackernews
from servers import run_server
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STORY = 1
KIDS = list(range(11, 19))
# A flat thread of eight comments: holding the third and the seventh stops
# the job at 25 and at 75 percent.
FLAT_THREAD = {
    STORY: {
        "by": "op",
        "descendants": len(KIDS),
        "id": STORY,
        "kids": KIDS,
        "time": 1700000000,
        "title": "Eight comments",
        "type": "story",
    },
    **{
        kid: {
            "by": f"user{kid}",
            "id": kid,
            "parent": STORY,
            "text": f"comment {kid}",
            "time": 1700000000 + kid,
            "type": "comment",
        }
        for kid in KIDS
    },
}
STORY_URL = f"https://news.ycombinator.com/item?id={STORY}"


@pytest.fixture
def hn():
    with serve_hackernews(FLAT_THREAD) as fixture:
        yield fixture


@pytest.fixture
def server(tmp_path: Path, hn):
    with run_server(
        tmp_path / "data",
        EXPORTHUB_HACKERNEWS_API=hn.base_url,
        EXPORTHUB_PROGRESS_INTERVAL="0.2",
        EXPORTHUB_RETRY_DELAY="0.2",
        EXPORTHUB_MAX_ATTEMPTS="3",
        EXPORTHUB_PLAN_CHECK_INTERVAL="0.2",
        EXPORTHUB_OUTBOX_INTERVAL="0.1",
    ) as running:
        yield running


class Session:
    """A user with a connected client and an HTTP client."""

    def __init__(self, server, user, watcher, client, http) -> None:
        self.server = server
        self.user = user
        self.watcher = watcher
        self.client = client
        self.http = http

    def channel(self, prefix: str) -> list:
        return self.watcher.on(f"{prefix}:{self.user['uuid']}")

    async def create_job(self, url: str = STORY_URL) -> dict:
        response = await self.http.post("/api/v3/job", json={"url": url})
        assert response.status_code == 201, response.text
        return response.json()

    async def until(self, prefix: str, predicate, count: int = 1) -> list:
        await self.watcher.wait_for(
            lambda: sum(1 for m in self.channel(prefix) if predicate(m)) >= count
        )
        return self.channel(prefix)


@pytest.fixture
async def alice(server):
    user = server.create_user("alice@example.com")
    watcher = Watcher()
    client = make_client(
        server.ws_url, token_getter(server.url, user["api_key"]), watcher
    )
    await client.connect()
    await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-AUTH-TOKEN": user["api_key"]}
    ) as http:
        try:
            yield Session(server, user, watcher, client, http)
        finally:
            await client.disconnect()


def is_event(name: str):
    return lambda m: m.get("event") == name


def is_type(name: str):
    return lambda m: m.get("type") == name


async def test_notifications_announce_start_milestones_once_and_completion(
    hn, alice
) -> None:
    first = hn.hold(13)
    second = hn.hold(17)
    job = await alice.create_job()
    await alice.until("user_notifications_channel", is_type("export_progress"))
    first.set()
    await alice.until("user_notifications_channel", is_type("export_progress"), 3)
    second.set()
    notes = await alice.until("user_notifications_channel", is_type("export_completed"))
    summary = [
        (n["type"], n["payload"]["level"], n["payload"].get("progress")) for n in notes
    ]
    assert summary == [
        ("export_started", "info", None),
        ("export_progress", "info", 25),
        ("export_progress", "info", 50),
        ("export_progress", "info", 75),
        ("export_completed", "success", None),
    ]
    assert notes[1]["payload"] == {
        "title": "Export 25% done",
        "message": "2 of 8 comments exported from Hacker News.",
        "level": "info",
        "guid": job["guid"],
        "progress": 25,
    }
    assert notes[0]["payload"]["title"] == "Export started"
    assert notes[-1]["payload"]["message"].startswith(
        "8 comments exported from Hacker News in "
    )
    assert all(set(n) == {"type", "payload", "timestamp"} for n in notes)


async def test_job_progress_is_throttled_to_one_event_per_interval(hn, alice) -> None:
    held = hn.hold(13)
    job = await alice.create_job()
    await alice.until("exports", is_event("job.progress"))
    await asyncio.sleep(1.0)  # five intervals pass with no new comment
    progress = [m for m in alice.channel("exports") if m["event"] == "job.progress"]
    assert [(m["current"], m["total"]) for m in progress] == [(2, 8)]
    held.set()
    events = await alice.until("exports", is_event("job.finished"))
    assert events[-1]["details"]["totalExported"] == 8
    assert events[0]["guid"] == job["guid"]


async def test_the_dashboard_gets_a_snapshot_then_every_change(hn, alice) -> None:
    await alice.watcher.wait_for(
        lambda: len(alice.channel("user_dashboard_channel")) >= 1
    )
    snapshot = alice.channel("user_dashboard_channel")[0]
    assert snapshot["type"] == "complete_update"
    assert snapshot["payload"]["activity"] == []
    assert snapshot["payload"]["usage"]["exports"] == 0
    assert snapshot["payload"]["subscription"]["plan"] == "free"

    held = hn.hold(13)
    job = await alice.create_job()
    await alice.until(
        "user_dashboard_channel",
        lambda m: (
            m["type"] == "activity_update"
            and m["payload"]["updates"]["exportedItems"] == 2
        ),
    )
    held.set()
    board = await alice.until("user_dashboard_channel", is_type("complete_update"), 2)
    kinds = [m["type"] for m in board]
    assert kinds[:4] == [
        "complete_update",
        "new_activity",
        "usage_stats",
        "activity_update",
    ]
    assert kinds[-3:] == ["activity_update", "usage_stats", "complete_update"]
    assert set(kinds[4:-3]) <= {"activity_update"}

    new = board[1]["payload"]
    assert (new["id"], new["status"], new["platform"]) == (
        job["guid"],
        "queueing",
        "Hacker News",
    )
    started = board[3]["payload"]
    assert started["guid"] == job["guid"]
    assert started["updates"]["status"] == "progress"
    two = next(
        m["payload"]["updates"]
        for m in board
        if m["type"] == "activity_update"
        and m["payload"]["updates"]["exportedItems"] == 2
    )
    assert (two["progress"], two["totalItems"], two["exportedItems"]) == (25.0, 8, 2)
    done = board[-3]["payload"]["updates"]
    assert (done["status"], done["progress"], done["exportedItems"]) == (
        "done",
        100.0,
        8,
    )
    assert done["duration"].endswith(("second", "seconds"))
    assert board[-2]["payload"]["exports"] == 1
    assert board[-2]["payload"]["items"] == 8
    assert board[-2]["payload"]["allowance"] == {"exports": 10, "items": 5000}
    final = board[-1]["payload"]
    assert [a["id"] for a in final["activity"]] == [job["guid"]]
    assert final["activity"][0]["status"] == "done"


async def test_a_transient_source_error_is_retried_then_fails_with_the_reason(
    hn, alice
) -> None:
    hn.status[STORY] = 503
    job = await alice.create_job()
    events = await alice.until("exports", is_event("job.failed"))
    assert [m["event"] for m in events] == [
        "job.created",
        "job.requeued",
        "job.requeued",
        "job.failed",
    ]
    assert [m["details"]["attempts"] for m in events[1:3]] == [1, 2]
    assert events[1]["details"]["reason"] == "Hacker News answered HTTP 503"
    assert events[-1]["guid"] == job["guid"]
    assert events[-1]["details"]["error"] == (
        "Hacker News answered HTTP 503 (gave up after 3 attempts)"
    )


async def test_a_conversion_publishes_the_converted_files_link(alice) -> None:
    job = await alice.create_job()
    await alice.until("exports", is_event("job.finished"))
    response = await alice.http.post(
        f"/api/v3/job/{job['guid']}/convert", json={"format": "csv"}
    )
    assert response.status_code == 202
    assert response.json() == {"guid": job["guid"], "format": "csv", "status": "queued"}
    events = await alice.until("exports", is_event("job.convert.done"))
    done = events[-1]
    assert done["url"] == done["details"]["download_link"]
    assert done["url"].endswith(f"/hackernews-{job['guid']}.csv")
    assert done["details"]["format"] == "csv"
    csv_text = (await alice.http.get(done["url"])).content.decode("utf-8-sig")
    lines = csv_text.splitlines()
    assert lines[0] == "id,parent_id,depth,author,published_at,text,permalink,replies"
    assert lines[1] == (
        "11,1,0,user11,2023-11-14T22:13:31+00:00,comment 11,"
        "https://news.ycombinator.com/item?id=11,0"
    )
    assert len(lines) == 9


async def test_converting_is_refused_for_unknown_formats_and_unfinished_jobs(
    hn, alice
) -> None:
    hn.hold(13)
    job = await alice.create_job()
    unfinished = await alice.http.post(
        f"/api/v3/job/{job['guid']}/convert", json={"format": "csv"}
    )
    unknown = await alice.http.post(
        f"/api/v3/job/{job['guid']}/convert", json={"format": "pdf"}
    )
    assert unknown.status_code == 422
    assert unknown.json() == {
        "error": "format must be one of xlsx, csv, json, ndjson",
        "error_code": "unknown_format",
    }
    assert unfinished.status_code == 409
    assert unfinished.json()["error_code"] == "job_not_finished"


async def test_a_bulk_download_zips_finished_exports(server, alice) -> None:
    first = await alice.create_job()
    second = await alice.create_job()
    await alice.until("exports", is_event("job.finished"), 2)
    response = await alice.http.post(
        "/api/v3/bulk-download",
        json={"guids": [first["guid"], second["guid"]], "format": "json"},
    )
    assert response.status_code == 202
    bulk = response.json()
    events = await alice.until("exports", is_event("bulk_download.ready"))
    ready = events[-1]
    assert ready["guid"] == bulk["guid"]
    assert ready["status"] == "done"
    assert ready["details"]["files"] == [
        {
            "guid": first["guid"],
            "name": f"hackernews-{first['guid']}.json",
            "url": STORY_URL,
        },
        {
            "guid": second["guid"],
            "name": f"hackernews-{second['guid']}.json",
            "url": STORY_URL,
        },
    ]
    archive = (await alice.http.get(ready["url"])).content
    assert len(archive) == ready["details"]["size"]
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        assert sorted(zipped.namelist()) == sorted(
            f["name"] for f in ready["details"]["files"]
        )
        for job in (first, second):
            stored = (await alice.http.get(f"/api/v3/job/{job['guid']}")).json()
            exported = (await alice.http.get(stored["json_url"])).content
            assert zipped.read(f"hackernews-{job['guid']}.json") == exported


async def test_a_bulk_download_refuses_other_users_and_unfinished_jobs(
    server, hn, alice
) -> None:
    bob = server.create_user("bob@example.com")
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-AUTH-TOKEN": bob["api_key"]}
    ) as http:
        theirs = (await http.post("/api/v3/job", json={"url": STORY_URL})).json()
    hn.hold(13)
    running = await alice.create_job()
    other = await alice.http.post(
        "/api/v3/bulk-download", json={"guids": [theirs["guid"]]}
    )
    unfinished = await alice.http.post(
        "/api/v3/bulk-download", json={"guids": [running["guid"]]}
    )
    empty = await alice.http.post("/api/v3/bulk-download", json={"guids": []})
    assert (other.status_code, other.json()["error_code"]) == (403, "forbidden")
    assert (unfinished.status_code, unfinished.json()["error_code"]) == (
        409,
        "job_not_finished",
    )
    assert (empty.status_code, empty.json()["error_code"]) == (422, "invalid_request")
    assert not [m for m in alice.channel("exports") if m["event"].startswith("bulk")]


async def test_a_bulk_download_that_cannot_be_assembled_fails_and_offers_no_zip(
    server, alice
) -> None:
    job = await alice.create_job()
    await alice.until("exports", is_event("job.finished"))
    records = (
        server.data_dir / "files" / job["guid"] / f"hackernews-{job['guid']}.ndjson"
    )
    records.unlink()
    await alice.http.post(
        "/api/v3/bulk-download", json={"guids": [job["guid"]], "format": "csv"}
    )
    events = await alice.until("exports", is_event("bulk_download.failed"))
    failed = events[-1]
    assert failed["url"] is None
    assert failed["status"] == "error"
    assert failed["details"]["error"] == f"the records of job {job['guid']} are missing"
    assert not any((server.data_dir / "bulk").rglob("*.zip"))


async def test_plan_changes_publish_subscription_updated(server, alice) -> None:
    def plan(*args: str) -> subprocess.CompletedProcess[str]:
        return server.cli("user", "plan", "alice@example.com", *args)

    assert plan("premium").returncode == 0
    updates = await alice.until("user", is_event("subscription.updated"))
    assert plan("none").returncode == 0
    updates = await alice.until("user", is_event("subscription.updated"), 2)
    created, canceled = updates
    assert created["status"] == "created"
    assert created["details"]["plan"] == "premium"
    assert created["details"]["limits"] == {"exports": 100, "items": 100000}
    assert canceled["status"] == "canceled"
    assert canceled["details"]["active_limits"] == {"exports": 10, "items": 5000}

    # The plan's end date passes: the server notices and says so.
    assert plan("business", "--days", "1").returncode == 0
    await alice.until("user", is_event("subscription.updated"), 3)
    past = datetime.now(UTC) - timedelta(minutes=1)
    server.execute("UPDATE users SET plan_ends_at = :past", past=past)
    updates = await alice.until("user", is_event("subscription.updated"), 4)
    assert [u["status"] for u in updates] == [
        "created",
        "canceled",
        "created",
        "expired",
    ]
    assert updates[-1]["details"]["plan"] == "business"

    # Each channel is its own stream: with Redis between the server and the
    # client, the other channels' messages may still be on their way.
    await alice.until(
        "user_notifications_channel",
        lambda n: n["type"] == "subscription_updated",
        4,
    )
    await alice.until(
        "user_dashboard_channel", lambda m: m["type"] == "subscription_status", 4
    )
    notes = [
        n["payload"]["message"]
        for n in alice.channel("user_notifications_channel")
        if n["type"] == "subscription_updated"
    ]
    assert notes == [
        "Your premium plan is active.",
        "Your premium plan was canceled.",
        "Your business plan is active.",
        "Your business plan has expired.",
    ]
    statuses = [
        m["payload"]["status"]
        for m in alice.channel("user_dashboard_channel")
        if m["type"] == "subscription_status"
    ]
    assert statuses == ["created", "canceled", "created", "expired"]


async def test_unknown_plans_and_users_are_refused_by_the_command_line(server) -> None:
    server.create_user("carol@example.com")
    unknown = server.cli("user", "plan", "carol@example.com", "gold")
    missing = server.cli("user", "plan", "nobody@example.com", "free")
    forever = server.cli(
        "user", "plan", "carol@example.com", "business", "--days", "99999999"
    )
    assert forever.returncode == 2
    assert forever.stderr.strip() == "exporthub: --days must be from 1 to 36500"
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "exporthub: unknown plan 'gold'; choose one of free, premium, business, none"
    )
    assert missing.returncode == 1
    assert "no user with email nobody@example.com" in missing.stderr


async def test_usage_warns_once_at_ninety_percent_and_refuses_past_the_allowance(
    alice,
) -> None:
    for _ in range(10):
        await alice.create_job("https://news.ycombinator.com/item?id=404")
    refused = await alice.http.post(
        "/api/v3/job", json={"url": "https://news.ycombinator.com/item?id=404"}
    )
    assert refused.status_code == 402
    assert refused.json() == {
        "error": "the free plan allows 10 exports a month and this month's are used "
        "up; nothing was queued. Upgrade the plan or wait for the next month",
        "error_code": "usage_limit_reached",
    }
    listed = (await alice.http.get("/api/v3/jobs")).json()
    assert listed["meta"]["total"] == 10
    await alice.until("exports", is_event("job.created"), 10)
    await asyncio.sleep(0.3)
    warnings = [
        n
        for n in alice.channel("user_notifications_channel")
        if n["type"] == "usage_limit_warning"
    ]
    assert len(warnings) == 1
    assert warnings[0]["payload"]["exports"] == 9
    assert warnings[0]["payload"]["percent"] == 90.0
    assert warnings[0]["payload"]["level"] == "warning"


async def test_parallel_requests_cannot_exceed_the_allowance(alice) -> None:
    url = "https://news.ycombinator.com/item?id=404"
    for _ in range(8):
        await alice.create_job(url)
    answers = await asyncio.gather(
        *(alice.http.post("/api/v3/job", json={"url": url}) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [201, 201, 402, 402, 402, 402]
    listed = (await alice.http.get("/api/v3/jobs")).json()
    assert listed["meta"]["total"] == 10


async def test_dashboards_connecting_together_each_get_their_own_snapshot(
    server,
) -> None:
    # User i has i % 3 finished jobs; all twelve connect at the same moment,
    # so the server answers them from shared queries.
    users = [server.create_user(f"user{i}@example.com") for i in range(12)]
    created: dict[str, list[str]] = {}
    for i, user in enumerate(users):
        jobs = [
            await create_job(server.url, user["api_key"], STORY_URL)
            for _ in range(i % 3)
        ]
        for job in jobs:
            await wait_for_status(server.url, user["api_key"], job["guid"], "done")
        created[user["uuid"]] = [job["guid"] for job in jobs]

    watchers = [Watcher() for _ in users]
    clients = [
        make_client(server.ws_url, token_getter(server.url, u["api_key"]), w)
        for u, w in zip(users, watchers, strict=True)
    ]
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        for user, watcher in zip(users, watchers, strict=True):
            board = f"user_dashboard_channel:{user['uuid']}"
            await watcher.wait_for(lambda w=watcher, b=board: len(w.on(b)) >= 1)
            snapshot = watcher.on(board)[0]
            assert snapshot["type"] == "complete_update"
            activity = snapshot["payload"]["activity"]
            assert [a["id"] for a in activity] == created[user["uuid"]][::-1]
            assert [a["exportedItems"] for a in activity] == [8] * len(activity)
            assert snapshot["payload"]["usage"]["exports"] == len(activity)
            assert snapshot["payload"]["usage"]["items"] == 8 * len(activity)
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients))
