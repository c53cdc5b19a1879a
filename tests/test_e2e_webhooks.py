"""Webhook deliveries from a real server to real local receivers: signed,
retried with growing delays, in order per job, across a crash, isolated
from slow endpoints, and reported on ``webhooks:{uuid}``."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from readme_snippets import load_function
from servers import free_port, run_server, stop
from watcher import Watcher, make_client, token_getter
from webhook_api import LOOPBACK_ONLY, UserApi, eventually
from webhook_receiver import serve_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

VERIFY = load_function("### Verifying a delivery", "verify_exporthub")
RETRY_DELAY = 0.2
JITTER = 0.25
JOB_EVENTS = ["job.created", "job.finished"]
LARGE_REPLY = 64 * 1024 * 1024
"""More than any socket buffers hold, so a reader that stops early shows."""
KEPT_REPLY = 512


def settings(hn, **overrides: str) -> dict[str, str]:
    """Short delays, loopback receivers allowed, and no progress events, so
    a job's events are exactly ``JOB_EVENTS``."""
    return {
        "EXPORTHUB_HACKERNEWS_API": hn.base_url,
        "EXPORTHUB_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK_ONLY,
        "EXPORTHUB_WEBHOOK_RETRY_DELAY": str(RETRY_DELAY),
        "EXPORTHUB_WEBHOOK_TIMEOUT": "2",
        "EXPORTHUB_WEBHOOK_MAX_ATTEMPTS": "8",
        "EXPORTHUB_PROGRESS_INTERVAL": "60",
        **overrides,
    }


@pytest.fixture
def server(tmp_path: Path, hn):
    with run_server(tmp_path / "data", **settings(hn)) as running:
        yield running


async def watch(server, user) -> tuple[Watcher, object]:
    watcher = Watcher()
    client = make_client(
        server.ws_url, token_getter(server.url, user["api_key"]), watcher
    )
    await client.connect()
    await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
    return watcher, client


def events_by_job(envelopes: list[dict]) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for envelope in envelopes:
        jobs.setdefault(envelope["guid"], []).append(envelope["event"])
    return jobs


async def test_a_delivery_body_is_the_envelope_published_on_the_exports_channel(
    server,
) -> None:
    alice = server.create_user("alice@example.com")
    watcher, client = await watch(server, alice)
    try:
        with serve_receiver() as receiver:
            async with httpx.AsyncClient(base_url=server.url) as http:
                api = UserApi(http, alice["api_key"])
                await api.register(receiver.url)
                await api.job()
                await receiver.wait_for(lambda: len(receiver.delivered()) == 2)
        exports = f"exports:{alice['uuid']}"
        await watcher.wait_for(lambda: len(watcher.on(exports)) == 2)
        channel = watcher.on(exports)
        assert [r.event for r in receiver.delivered()] == channel
        assert [e["event"] for e in channel] == JOB_EVENTS
    finally:
        await client.disconnect()


async def test_a_delivery_is_signed_so_the_readme_recipe_verifies_it(server) -> None:
    alice = server.create_user("alice@example.com")
    with serve_receiver() as receiver:
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = UserApi(http, alice["api_key"])
            webhook = await api.register(receiver.url, ["job.created"])
            await api.job()
            [delivery] = await api.ended_deliveries(webhook["id"], 1)
    [received] = receiver.requests
    headers = httpx.Headers(received.headers)
    assert VERIFY(webhook["secret"], headers, received.body) is True
    assert VERIFY(webhook["secret"], headers, received.body + b" ") is False
    assert (
        headers["exporthub-delivery"],
        headers["exporthub-event"],
        headers["exporthub-attempt"],
        headers["content-type"],
    ) == (delivery["id"], "job.created", "1", "application/json")


@pytest.mark.timeout(60)
async def test_failed_attempts_are_retried_with_growing_delays_until_the_limit(
    tmp_path: Path, hn
) -> None:
    env = settings(hn, EXPORTHUB_WEBHOOK_MAX_ATTEMPTS="4")
    with (
        run_server(tmp_path / "data", **env) as server,
        serve_receiver(status=500) as receiver,
    ):
        alice = server.create_user("alice@example.com")
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = UserApi(http, alice["api_key"])
            webhook = await api.register(receiver.url, ["job.created"])
            await api.job()
            [delivery] = await api.ended_deliveries(webhook["id"], 1)
            metrics = (await http.get("/metrics")).text.splitlines()
    attempts = delivery["attempts"]
    delays = [a["retry_in"] for a in attempts]
    assert 'exporthub_webhook_attempts_total{outcome="http_error"} 4.0' in metrics
    assert delivery["status"] == "failed"
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert [(a["status_code"], a["error"], a["success"]) for a in attempts] == [
        (500, "answered 500", False)
    ] * 4
    assert delays[3] is None
    assert delays[0] < delays[1] < delays[2]
    for n, delay in enumerate(delays[:3]):
        base = RETRY_DELAY * 2**n
        assert base <= delay <= base * (1 + JITTER)
    assert [r.headers["exporthub-attempt"] for r in receiver.requests] == [
        "1",
        "2",
        "3",
        "4",
    ]
    assert {r.delivery for r in receiver.requests} == {delivery["id"]}


async def test_a_receiver_answering_503_for_a_while_gets_every_event_in_order(
    server,
) -> None:
    alice = server.create_user("alice@example.com")
    watcher, client = await watch(server, alice)
    try:
        with serve_receiver(status=503) as receiver:
            async with httpx.AsyncClient(base_url=server.url) as http:
                api = UserApi(http, alice["api_key"])
                webhook = await api.register(receiver.url)
                first = await api.job()
                second = await api.job()
                for job in (first, second):
                    await eventually(
                        lambda job=job: api.job_status(job["guid"]), "done".__eq__
                    )

                def refused_twice(found: list) -> bool:
                    created = [d for d in found if d["event"] == "job.created"]
                    return len(created) == 2 and all(
                        len(d["attempts"]) >= 2 for d in created
                    )

                await eventually(lambda: api.deliveries(webhook["id"]), refused_twice)
                receiver.status = 200
                deliveries = await api.ended_deliveries(webhook["id"], 4)
        exports = f"exports:{alice['uuid']}"
        await watcher.wait_for(lambda: len(watcher.on(exports)) == 4)
        sent = events_by_job(watcher.on(exports))
        received = events_by_job([r.event for r in receiver.delivered()])
        assert sent == {first["guid"]: JOB_EVENTS, second["guid"]: JOB_EVENTS}
        assert received == sent
        refused = [a for d in deliveries for a in d["attempts"] if not a["success"]]
        finished = [d for d in deliveries if d["event"] == "job.finished"]
        assert [r.answered for r in receiver.requests].count(503) == len(refused)
        assert [len(d["attempts"]) for d in finished] == [1, 1]
        assert sorted(r.delivery for r in receiver.delivered()) == sorted(
            d["id"] for d in deliveries
        )
    finally:
        await client.disconnect()


@pytest.mark.timeout(120)
async def test_a_server_killed_mid_retry_delivers_everything_after_a_restart(
    tmp_path: Path, hn
) -> None:
    port = free_port()
    env = settings(hn, EXPORTHUB_WEBHOOK_MAX_ATTEMPTS="50")
    with run_server(tmp_path / "data", **env) as first:
        alice = first.create_user("alice@example.com")
        async with httpx.AsyncClient(base_url=first.url) as http:
            api = UserApi(http, alice["api_key"])
            webhook = await api.register(f"http://127.0.0.1:{port}/hook")
            jobs = [await api.job(), await api.job()]
            for job in jobs:
                await eventually(
                    lambda job=job: api.job_status(job["guid"]), "done".__eq__
                )

            def retrying(found: list) -> bool:
                return len(found) == 4 and len(found[0]["attempts"]) >= 2

            await eventually(lambda: api.deliveries(webhook["id"]), retrying)
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(10)

    with serve_receiver(port=port) as receiver:
        with run_server(tmp_path / "data", **env) as second:
            async with httpx.AsyncClient(base_url=second.url) as http:
                api = UserApi(http, alice["api_key"])
                deliveries = await api.ended_deliveries(webhook["id"], 4)
    received = events_by_job([r.event for r in receiver.delivered()])
    assert received == {job["guid"]: JOB_EVENTS for job in jobs}
    assert [d["status"] for d in deliveries] == ["delivered"] * 4
    for delivery in deliveries:
        numbers = [a["attempt"] for a in delivery["attempts"]]
        assert numbers == list(range(1, len(numbers) + 1))
        assert delivery["attempts"][-1]["success"] is True
    assert delivery_errors(deliveries[0])[0].startswith("could not connect")


def delivery_errors(delivery: dict) -> list[str]:
    return [a["error"] for a in delivery["attempts"] if a["error"]]


async def test_a_hanging_endpoint_holds_up_no_other_endpoint_user_or_job(
    tmp_path: Path, hn
) -> None:
    env = settings(hn, EXPORTHUB_WEBHOOK_TIMEOUT="30")
    gate = threading.Event()
    with (
        serve_receiver(gate=gate) as hanging,
        serve_receiver() as other,
        serve_receiver() as bobs,
        run_server(tmp_path / "data", **env) as server,
    ):
        try:
            alice = server.create_user("alice@example.com")
            bob = server.create_user("bob@example.com")
            async with httpx.AsyncClient(base_url=server.url) as http:
                alice_api = UserApi(http, alice["api_key"])
                bob_api = UserApi(http, bob["api_key"])
                await alice_api.register(hanging.url)
                await alice_api.register(other.url)
                await bob_api.register(bobs.url)
                alices_job = await alice_api.job()
                bobs_job = await bob_api.job()
                await other.wait_for(lambda: len(other.delivered()) == 2)
                await bobs.wait_for(lambda: len(bobs.delivered()) == 2)
                statuses = [
                    await alice_api.job_status(alices_job["guid"]),
                    await bob_api.job_status(bobs_job["guid"]),
                ]
            assert (hanging.arrived, hanging.requests) == (1, [])
            assert statuses == ["done", "done"]
            assert [r.event["event"] for r in other.delivered()] == JOB_EVENTS
        finally:
            gate.set()


async def test_every_attempt_is_reported_on_the_webhooks_channel(server) -> None:
    alice = server.create_user("alice@example.com")
    watcher, client = await watch(server, alice)
    channel = f"webhooks:{alice['uuid']}"
    try:
        with serve_receiver(queue=[503]) as receiver:
            async with httpx.AsyncClient(base_url=server.url) as http:
                api = UserApi(http, alice["api_key"])
                webhook = await api.register(receiver.url, ["job.created"])
                job = await api.job()
                await watcher.wait_for(lambda: len(watcher.on(channel)) == 2)
                [delivery] = await api.deliveries(webhook["id"])
        reports = watcher.on(channel)
        durations = [r["details"].pop("duration_ms") for r in reports]
        assert all(isinstance(d, float) and d >= 0 for d in durations)
        common = {
            "delivery_id": delivery["id"],
            "webhook_id": webhook["id"],
            "url": receiver.url,
            "event": "job.created",
        }
        assert reports == [
            {
                "version": "v3-beta",
                "event": "webhook.event.created",
                "guid": job["guid"],
                "status": "pending",
                "url": receiver.url,
                "details": {
                    **common,
                    "attempt": 1,
                    "status_code": 503,
                    "error": "answered 503",
                    "success": False,
                },
            },
            {
                "version": "v3-beta",
                "event": "webhook.event.created",
                "guid": job["guid"],
                "status": "delivered",
                "url": receiver.url,
                "details": {
                    **common,
                    "attempt": 2,
                    "status_code": 200,
                    "error": None,
                    "success": True,
                },
            },
        ]
    finally:
        await client.disconnect()


async def test_an_endpoint_with_an_event_filter_gets_only_those_events(
    server,
) -> None:
    alice = server.create_user("alice@example.com")
    with serve_receiver() as receiver:
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = UserApi(http, alice["api_key"])
            webhook = await api.register(receiver.url, ["job.finished"])
            job = await api.job()
            await eventually(lambda: api.job_status(job["guid"]), "done".__eq__)
            [delivery] = await api.ended_deliveries(webhook["id"], 1)
    assert delivery["event"] == "job.finished"
    assert [r.event["event"] for r in receiver.requests] == ["job.finished"]


async def test_a_delivery_to_a_host_name_keeps_the_name_in_the_host_header(
    server,
) -> None:
    alice = server.create_user("alice@example.com")
    with serve_receiver() as receiver:
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = UserApi(http, alice["api_key"])
            url = f"http://localhost:{receiver.port}/hook"
            webhook = await api.register(url, ["job.created"])
            await api.job()
            [delivery] = await api.ended_deliveries(webhook["id"], 1)
    [received] = receiver.requests
    assert delivery["status"] == "delivered"
    assert received.headers["host"] == f"localhost:{receiver.port}"


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(server) -> None:
    alice = server.create_user("alice@example.com")
    with (
        serve_receiver() as target,
        serve_receiver(
            status=302, location=f"http://127.0.0.1:{free_port()}/elsewhere"
        ) as receiver,
    ):
        receiver.location = target.url
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = UserApi(http, alice["api_key"])
            webhook = await api.register(receiver.url, ["job.created"])
            await api.job()
            [delivery] = await eventually(
                lambda: api.deliveries(webhook["id"]),
                lambda found: bool(found and found[0]["attempts"]),
            )
    first = delivery["attempts"][0]
    assert (first["status_code"], first["error"], first["success"]) == (
        302,
        "answered 302; redirects are not followed",
        False,
    )
    assert target.connections == 0


async def test_only_the_head_of_a_large_answer_is_read(server) -> None:
    alice = server.create_user("alice@example.com")
    with serve_receiver(reply_size=LARGE_REPLY) as receiver:
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = UserApi(http, alice["api_key"])
            webhook = await api.register(receiver.url, ["job.created"])
            await api.job()
            [delivery] = await api.ended_deliveries(webhook["id"], 1)
        await receiver.wait_for(lambda: receiver.reply_cut)
    [attempt] = delivery["attempts"]
    assert (attempt["success"], attempt["response"]) == (True, "x" * KEPT_REPLY)


async def test_an_endpoint_that_does_not_answer_in_time_is_a_timed_out_attempt(
    server,
) -> None:
    alice = server.create_user("alice@example.com")
    gate = threading.Event()
    with serve_receiver(gate=gate) as receiver:
        try:
            async with httpx.AsyncClient(base_url=server.url) as http:
                api = UserApi(http, alice["api_key"])
                webhook = await api.register(receiver.url, ["job.created"])
                await api.job()
                [delivery] = await eventually(
                    lambda: api.deliveries(webhook["id"]),
                    lambda found: bool(found and found[0]["attempts"]),
                )
        finally:
            gate.set()
    first = delivery["attempts"][0]
    assert (first["status_code"], first["error"], first["success"]) == (
        None,
        "timed out after 2s",
        False,
    )


async def test_an_address_refused_after_registration_is_never_contacted(
    tmp_path: Path, hn
) -> None:
    strict = settings(hn, EXPORTHUB_WEBHOOK_MAX_ATTEMPTS="2")
    del strict["EXPORTHUB_WEBHOOK_ALLOWED_NETWORKS"]
    with serve_receiver() as receiver:
        with run_server(tmp_path / "data", **settings(hn)) as lenient:
            alice = lenient.create_user("alice@example.com")
            async with httpx.AsyncClient(base_url=lenient.url) as http:
                webhook = await UserApi(http, alice["api_key"]).register(
                    receiver.url, ["job.created"]
                )
        with run_server(tmp_path / "data", **strict) as server:
            async with httpx.AsyncClient(base_url=server.url) as http:
                api = UserApi(http, alice["api_key"])
                await api.job()
                [delivery] = await api.ended_deliveries(webhook["id"], 1)
    assert delivery["status"] == "failed"
    assert [a["error"] for a in delivery["attempts"]] == [
        "127.0.0.1 is a loopback address"
    ] * 2
    assert receiver.connections == 0


async def test_an_endpoint_has_at_most_its_concurrency_of_attempts_at_once(
    tmp_path: Path, hn
) -> None:
    env = settings(
        hn, EXPORTHUB_WEBHOOK_TIMEOUT="30", EXPORTHUB_WEBHOOK_CONCURRENCY="2"
    )
    gate = threading.Event()
    with (
        serve_receiver(gate=gate) as receiver,
        run_server(tmp_path / "data", **env) as server,
    ):
        try:
            alice = server.create_user("alice@example.com")
            async with httpx.AsyncClient(base_url=server.url) as http:
                api = UserApi(http, alice["api_key"])
                webhook = await api.register(receiver.url)
                jobs = [await api.job() for _ in range(3)]
                for job in jobs:
                    await eventually(
                        lambda job=job: api.job_status(job["guid"]), "done".__eq__
                    )
                await receiver.wait_for(lambda: receiver.arrived == 2)
                held = receiver.arrived
                gate.set()
                await api.ended_deliveries(webhook["id"], 6)
        finally:
            gate.set()
    received = events_by_job([r.event for r in receiver.delivered()])
    assert held == 2
    assert received == {job["guid"]: JOB_EVENTS for job in jobs}


@pytest.mark.timeout(120)
async def test_an_attempt_cut_off_by_a_shutdown_is_recorded_and_made_again(
    tmp_path: Path, hn
) -> None:
    env = settings(hn, EXPORTHUB_WEBHOOK_TIMEOUT="30")
    gate = threading.Event()
    with serve_receiver(gate=gate) as receiver:
        with run_server(tmp_path / "data", **env) as first:
            alice = first.create_user("alice@example.com")
            async with httpx.AsyncClient(base_url=first.url) as http:
                api = UserApi(http, alice["api_key"])
                webhook = await api.register(receiver.url, ["job.created"])
                await api.job()
                await receiver.wait_for(lambda: receiver.arrived == 1)
            stop(first.process)
        gate.set()
        with run_server(tmp_path / "data", **env) as second:
            async with httpx.AsyncClient(base_url=second.url) as http:
                api = UserApi(http, alice["api_key"])
                [delivery] = await api.ended_deliveries(webhook["id"], 1)
    assert [
        (a["attempt"], a["status_code"], a["error"], a["success"])
        for a in delivery["attempts"]
    ] == [
        (1, None, "interrupted: the process sending it stopped", False),
        (2, 200, None, True),
    ]
