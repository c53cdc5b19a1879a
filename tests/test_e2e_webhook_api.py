"""The webhook routes on a real server: registration and its refusals, the
secret, listing, deleting, deliveries and redelivery, and other users'
endpoints."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from hn_fixture import serve_hackernews
from servers import run_server
from webhook_api import LOOPBACK_ONLY, UserApi, eventually
from webhook_receiver import serve_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

MAX_WEBHOOKS = 20

VALID_EVENTS = (
    "job.created, job.progress, job.finished, job.failed, job.requeued, "
    "job.convert.done, job.convert.failed, bulk_download.ready, "
    "bulk_download.failed"
)


@pytest.fixture(scope="module")
def hn():
    with serve_hackernews() as fixture:
        yield fixture


@pytest.fixture(scope="module")
def server(tmp_path_factory, hn):
    with run_server(
        tmp_path_factory.mktemp("webhook-api"),
        EXPORTHUB_HACKERNEWS_API=hn.base_url,
        EXPORTHUB_WEBHOOK_ALLOWED_NETWORKS=LOOPBACK_ONLY,
        EXPORTHUB_WEBHOOK_RETRY_DELAY="0.2",
        EXPORTHUB_WEBHOOK_TIMEOUT="20",
        EXPORTHUB_PROGRESS_INTERVAL="60",
    ) as running:
        yield running


@pytest.fixture
async def alice(server):
    user = server.create_user(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield UserApi(http, user["api_key"])


@pytest.fixture(scope="module")
def refused_key(server) -> str:
    """The key of a user whose every registration is refused, so the tests
    of refusals can share it."""
    return server.create_user("refused@example.com")["api_key"]


@pytest.fixture
async def refused(server, refused_key):
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield UserApi(http, refused_key)


@pytest.fixture
async def bob(server):
    user = server.create_user(f"bob-{uuid.uuid4().hex[:8]}@example.com")
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield UserApi(http, user["api_key"])


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("http://10.0.0.1/hook", "address_refused", "10.0.0.1 is a private address"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "address_refused",
            "169.254.169.254 is a cloud metadata address",
        ),
        ("http://[::1]:8080/hook", "address_refused", "::1 is a loopback address"),
        (
            "file:///etc/passwd",
            "invalid_url",
            "url must start with http:// or https://",
        ),
    ],
)
async def test_registration_refuses_an_endpoint_that_is_not_allowed(
    refused, url, code, message
) -> None:
    response = await refused.post("/api/v3/webhooks", {"url": url})
    assert response.status_code == 422
    assert response.json() == {"error": message, "error_code": code}
    assert (await refused.get("/api/v3/webhooks")).json() == {"data": []}


async def test_registration_sends_nothing_to_the_endpoint(alice) -> None:
    with serve_receiver() as receiver:
        await alice.register(receiver.url)
    assert receiver.connections == 0


async def test_registration_refuses_localhost_when_loopback_is_not_allowed(
    tmp_path, hn
) -> None:
    with (
        serve_receiver() as receiver,
        run_server(tmp_path / "data", EXPORTHUB_HACKERNEWS_API=hn.base_url) as strict,
    ):
        user = strict.create_user("carol@example.com")
        async with httpx.AsyncClient(base_url=strict.url) as http:
            api = UserApi(http, user["api_key"])
            by_name = await api.post(
                "/api/v3/webhooks", {"url": f"http://localhost:{receiver.port}/hook"}
            )
            by_address = await api.post("/api/v3/webhooks", {"url": receiver.url})
    assert (by_name.status_code, by_name.json()) == (
        422,
        {
            "error": "localhost resolves to 127.0.0.1, a loopback address",
            "error_code": "address_refused",
        },
    )
    assert (by_address.status_code, by_address.json()) == (
        422,
        {"error": "127.0.0.1 is a loopback address", "error_code": "address_refused"},
    )
    assert receiver.connections == 0


async def test_the_secret_is_shown_at_registration_only(alice) -> None:
    created = await alice.register("http://127.0.0.1:9/hook", ["job.finished"])
    listed = (await alice.get("/api/v3/webhooks")).json()
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) == 49
    assert listed == {
        "data": [
            {
                "id": created["id"],
                "url": "http://127.0.0.1:9/hook",
                "events": ["job.finished"],
                "created_at": created["created_at"],
            }
        ]
    }


async def test_a_user_has_at_most_twenty_webhooks(alice) -> None:
    for n in range(MAX_WEBHOOKS):
        await alice.register(f"http://127.0.0.1:9/hook/{n}")
    response = await alice.post("/api/v3/webhooks", {"url": "http://127.0.0.1:9/"})
    assert response.status_code == 409
    assert response.json() == {
        "error": "at most 20 webhooks per user",
        "error_code": "webhook_limit",
    }


async def test_unknown_events_are_refused_with_the_valid_names(refused) -> None:
    response = await refused.post(
        "/api/v3/webhooks",
        {"url": "http://127.0.0.1:9/hook", "events": ["job.finished", "job.nope"]},
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": f"unknown events: job.nope; valid events are {VALID_EVENTS}",
        "error_code": "invalid_events",
    }


@pytest.mark.parametrize("events", ["job.finished", [], [1], {"job.finished": 1}])
async def test_events_that_are_not_a_list_of_names_are_refused(refused, events) -> None:
    response = await refused.post(
        "/api/v3/webhooks", {"url": "http://127.0.0.1:9/hook", "events": events}
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "events must be a non-empty list of event names, or left out for "
        f"every event; valid events are {VALID_EVENTS}",
        "error_code": "invalid_events",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "url is required: the http(s) address to POST events to"),
        ({"url": "not a url"}, "url must start with http:// or https://"),
        ({"url": "https://"}, "url has no host"),
        (
            {"url": "http://u:p@127.0.0.1/hook"},
            "url must not carry a user name or password",
        ),
    ],
)
async def test_a_bad_url_is_refused(refused, body, message) -> None:
    response = await refused.post("/api/v3/webhooks", body)
    assert response.status_code == 422
    assert response.json() == {"error": message, "error_code": "invalid_url"}


async def test_another_users_webhook_is_not_found(alice, bob) -> None:
    webhook = await alice.register("http://127.0.0.1:9/hook")
    base = f"/api/v3/webhooks/{webhook['id']}"
    missing = {"error": f"no webhook {webhook['id']}", "error_code": "not_found"}
    responses = [
        await bob.get(f"{base}/deliveries"),
        await bob.post(f"{base}/deliveries/{uuid.uuid4()}/redeliver"),
        await bob.delete(base),
    ]
    assert [(r.status_code, r.json()) for r in responses] == [(404, missing)] * 3
    assert [w["id"] for w in (await alice.get("/api/v3/webhooks")).json()["data"]] == [
        webhook["id"]
    ]


async def test_a_deleted_webhook_is_gone_with_its_deliveries(alice) -> None:
    with serve_receiver() as receiver:
        webhook = await alice.register(receiver.url, ["job.created"])
        await alice.job()
        await alice.ended_deliveries(webhook["id"], 1)
    deleted = await alice.delete(f"/api/v3/webhooks/{webhook['id']}")
    deliveries = await alice.get(f"/api/v3/webhooks/{webhook['id']}/deliveries")
    assert deleted.status_code == 204
    assert (await alice.get("/api/v3/webhooks")).json() == {"data": []}
    assert deliveries.status_code == 404


async def test_the_deliveries_list_shows_each_delivery_with_its_attempts(
    alice,
) -> None:
    with serve_receiver(queue=[502]) as receiver:
        webhook = await alice.register(receiver.url, ["job.created"])
        job = await alice.job()
        [delivery] = await alice.ended_deliveries(webhook["id"], 1)
    attempts = delivery.pop("attempts")
    assert delivery == {
        "id": receiver.requests[0].delivery,
        "webhook_id": webhook["id"],
        "event": "job.created",
        "job_guid": job["guid"],
        "status": "delivered",
        "redelivery_of": None,
        "created_at": delivery["created_at"],
        "next_attempt_at": None,
        "finished_at": delivery["finished_at"],
        "payload": receiver.requests[0].event,
    }
    assert [
        (a["attempt"], a["status_code"], a["error"], a["success"], a["response"])
        for a in attempts
    ] == [
        (1, 502, "answered 502", False, '{"ok": true}'),
        (2, 200, None, True, '{"ok": true}'),
    ]
    assert attempts[0]["retry_in"] > 0
    assert attempts[1]["retry_in"] is None
    assert attempts[0]["attempted_at"] < attempts[1]["attempted_at"]


async def test_redeliver_sends_the_same_payload_again_as_a_new_delivery(
    alice,
) -> None:
    with serve_receiver() as receiver:
        webhook = await alice.register(receiver.url, ["job.created"])
        await alice.job()
        [original] = await alice.ended_deliveries(webhook["id"], 1)
        response = await alice.post(
            f"/api/v3/webhooks/{webhook['id']}/deliveries/{original['id']}/redeliver"
        )
        deliveries = await alice.ended_deliveries(webhook["id"], 2)
    again = response.json()
    assert response.status_code == 202
    assert (again["status"], again["redelivery_of"], again["attempts"]) == (
        "pending",
        original["id"],
        [],
    )
    assert [d["id"] for d in deliveries] == [original["id"], again["id"]]
    assert [d["status"] for d in deliveries] == ["delivered", "delivered"]
    assert [r.delivery for r in receiver.requests] == [original["id"], again["id"]]
    assert receiver.requests[0].body == receiver.requests[1].body


async def test_redelivering_a_delivery_still_in_flight_is_a_conflict(alice) -> None:
    gate = threading.Event()
    with serve_receiver(gate=gate) as receiver:
        try:
            webhook = await alice.register(receiver.url, ["job.created"])
            await alice.job()
            [pending] = await eventually(
                lambda: alice.deliveries(webhook["id"]), lambda found: len(found) == 1
            )
            response = await alice.post(
                f"/api/v3/webhooks/{webhook['id']}/deliveries/{pending['id']}/redeliver"
            )
        finally:
            gate.set()
    assert response.status_code == 409
    assert response.json() == {
        "error": f"delivery {pending['id']} is still being attempted",
        "error_code": "conflict",
    }


async def test_redelivering_an_unknown_delivery_is_not_found(alice) -> None:
    webhook = await alice.register("http://127.0.0.1:9/hook")
    unknown = uuid.uuid4()
    response = await alice.post(
        f"/api/v3/webhooks/{webhook['id']}/deliveries/{unknown}/redeliver"
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": f"no delivery {unknown}",
        "error_code": "not_found",
    }
