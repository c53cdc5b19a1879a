"""Bad input gets its own clear error, and the server goes on serving
everyone else. Runs against a real server process."""

from __future__ import annotations

import time

import httpx
import jwt
import orjson
import pytest
import websockets

from servers import run_server
from watcher import Watcher, make_client, token_getter

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SECRET = "test-secret-of-sufficient-length-0123456789"
STORY_URL = "https://news.ycombinator.com/item?id=8863"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # Unreachable source: these tests never let a job run to the platform.
    data = tmp_path_factory.mktemp("bad-input") / "data"
    with run_server(
        data,
        EXPORTHUB_HACKERNEWS_API="http://127.0.0.1:9/v0",
        EXPORTHUB_MAX_BODY_BYTES="4096",
        EXPORTHUB_MAX_FRAME_BYTES="2048",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def alice(server):
    return server.create_user("alice@example.com")


def auth(user) -> dict[str, str]:
    return {"X-AUTH-TOKEN": user["api_key"]}


async def post_job(server, headers, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.post("/api/v3/job", headers=headers, **kwargs)


async def test_an_unsupported_url_is_422_and_points_to_the_platforms(
    server, alice
) -> None:
    response = await post_job(
        server, auth(alice), json={"url": "https://example.com/x"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "unsupported_url"
    assert "Hacker News" in body["error"]
    assert "GET /api/v3/platforms" in body["error"]


async def test_the_platforms_route_lists_url_patterns_and_examples(server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = (await http.get("/api/v3/platforms")).json()["platforms"]
    hackernews = next(p for p in listed if p["key"] == "hackernews")
    assert hackernews["url_patterns"] == ["https://news.ycombinator.com/item?id={id}"]
    assert hackernews["examples"] == ["https://news.ycombinator.com/item?id=8863"]
    assert set(hackernews["options"]) >= {
        "replies",
        "limit",
        "minTimestamp",
        "maxTimestamp",
    }


async def test_a_missing_url_is_422(server, alice) -> None:
    response = await post_job(server, auth(alice), json={"options": {}})
    assert response.status_code == 422
    assert response.json()["error_code"] == "unsupported_url"


async def test_a_body_that_is_not_json_is_400(server, alice) -> None:
    response = await post_job(
        server, {**auth(alice), "Content-Type": "application/json"}, content=b"url=x"
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_json"
    assert response.json()["error"].startswith("the body is not JSON")


async def test_a_json_body_that_is_not_an_object_is_400(server, alice) -> None:
    response = await post_job(server, auth(alice), json=[STORY_URL])
    assert response.status_code == 400
    assert response.json() == {
        "error": "the body must be a JSON object",
        "error_code": "invalid_json",
    }


async def test_a_huge_body_is_413(server, alice) -> None:
    response = await post_job(
        server, auth(alice), json={"url": STORY_URL, "pad": "x" * 10_000}
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": "request body over 4096 bytes",
        "error_code": "body_too_large",
    }


async def test_a_huge_chunked_body_is_413(server, alice) -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    response = await post_job(server, auth(alice), content=chunks())
    assert response.status_code == 413


async def test_a_bad_option_is_422(server, alice) -> None:
    response = await post_job(
        server, auth(alice), json={"url": STORY_URL, "options": {"limit": "ten"}}
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "options.limit must be an integer >= 1",
        "error_code": "invalid_option",
    }


async def test_an_unknown_option_is_422_and_nothing_is_stored(server, alice) -> None:
    response = await post_job(
        server, auth(alice), json={"url": STORY_URL, "options": {"foo": "x" * 1000}}
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "unknown option 'foo' for Hacker News; it takes limit, "
        "maxTimestamp, minTimestamp, replies (see GET /api/v3/platforms)",
        "error_code": "invalid_option",
    }


async def test_a_missing_api_key_is_401(server) -> None:
    response = await post_job(server, {}, json={"url": STORY_URL})
    assert response.status_code == 401
    assert response.json() == {
        "error": "send your API key in the X-AUTH-TOKEN header",
        "error_code": "missing_api_key",
    }


async def test_a_wrong_api_key_is_401(server) -> None:
    for path in ("/api/v3/jobs", "/api/public/auth/socket"):
        async with httpx.AsyncClient(base_url=server.url) as http:
            method = http.get if path.endswith("jobs") else http.post
            response = await method(path, headers={"X-AUTH-TOKEN": "ehk_wrong"})
        assert response.status_code == 401
        assert response.json()["error_code"] == "invalid_api_key"


async def test_unknown_routes_and_methods_answer_json(server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.get("/api/v3/nothing")
        wrong_method = await http.delete("/api/v3/jobs")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error_code"] == "method_not_allowed"


async def test_a_malformed_page_number_is_400(server, alice) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/api/v3/jobs?page=-1", headers=auth(alice))
    assert response.status_code == 400
    assert response.json()["error"] == "page must be an integer from 1 to 1000000000"


async def test_a_page_number_no_database_holds_is_400_not_a_crash(
    server, alice
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        jobs = await http.get(
            "/api/v3/jobs?page=99999999999999999999", headers=auth(alice)
        )
        webhook = await http.delete(
            "/api/v3/webhooks/99999999999999999999999", headers=auth(alice)
        )
    assert (jobs.status_code, jobs.json()["error_code"]) == (400, "invalid_request")
    assert (webhook.status_code, webhook.json()["error_code"]) == (404, "not_found")


# -- the WebSocket -----------------------------------------------------------


async def token_for(server, user) -> str:
    return await token_getter(server.url, user["api_key"])()


async def raw_session(server, frames: list[bytes]):
    """Send frames on a raw WebSocket; return the replies (pushes left out)
    and the close code."""
    replies = []
    async with websockets.connect(server.ws_url) as ws:
        for frame in frames:
            await ws.send(frame.decode())
        try:
            while True:
                message = await ws.recv()
                for line in message.split("\n"):
                    decoded = orjson.loads(line)
                    if "push" not in decoded:
                        replies.append(decoded)
                if len(replies) >= len(frames):
                    break
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed() if ws.close_code else None
        return replies, ws.close_code, ws.close_reason


async def test_malformed_json_on_the_socket_is_3501(server, alice) -> None:
    token = await token_for(server, alice)
    connect = orjson.dumps({"id": 1, "connect": {"token": token}})
    replies, code, reason = await raw_session(server, [connect, b'{"id":2,'])
    assert "connect" in replies[0]
    assert code == 3501
    assert reason.startswith("bad request: malformed JSON")


async def test_an_unknown_command_is_104_and_the_connection_stays(
    server, alice
) -> None:
    token = await token_for(server, alice)
    connect = orjson.dumps({"id": 1, "connect": {"token": token}})
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(connect.decode())
        await ws.recv()  # the connect reply
        await ws.recv()  # the dashboard snapshot every client gets
        await ws.send('{"id":2,"fly":{}}')
        assert orjson.loads(await ws.recv()) == {
            "id": 2,
            "error": {"code": 104, "message": "method not found"},
        }
        await ws.send('{"id":3,"ping":{}}')
        assert orjson.loads(await ws.recv()) == {"id": 3, "ping": {}}


async def test_a_frame_over_the_limit_is_closed_with_1009(server, alice) -> None:
    token = await token_for(server, alice)
    connect = orjson.dumps({"id": 1, "connect": {"token": token}})
    big = b'{"id":2,"ping":{},"pad":"' + b"x" * 3000 + b'"}'
    _, code, reason = await raw_session(server, [connect, big])
    assert (code, reason) == (1009, "message too big")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "invalid token: token required"),
        (
            jwt.encode(
                {"sub": "x", "channels": ["exports:x"]},
                "not-the-secret-012345678901234567",
                "HS256",
            ),
            "invalid token: Signature verification failed",
        ),
    ],
    ids=["empty", "forged"],
)
async def test_empty_and_forged_tokens_are_closed_with_3500(
    server, token, reason
) -> None:
    connect = orjson.dumps({"id": 1, "connect": {"token": token}})
    replies, code, close_reason = await raw_session(server, [connect])
    assert replies == []
    assert (code, close_reason) == (3500, reason)


async def test_an_expired_token_gets_109(server, alice) -> None:
    expired = jwt.encode(
        {"sub": alice["uuid"], "exp": int(time.time()) - 60}, SECRET, "HS256"
    )
    replies, _, _ = await raw_session(
        server, [orjson.dumps({"id": 1, "connect": {"token": expired}})]
    )
    assert replies == [
        {"id": 1, "error": {"code": 109, "message": "token expired", "temporary": True}}
    ]


async def test_another_users_channel_is_103_and_everyone_else_is_served(
    server, alice
) -> None:
    bob = server.create_user("bob-ws@example.com")
    watcher = Watcher()
    bob_client = make_client(
        server.ws_url, token_getter(server.url, bob["api_key"]), watcher
    )
    await bob_client.connect()
    try:
        await watcher.wait_for(lambda: len(watcher.subscribed) == 5)
        token = await token_for(server, alice)
        replies, _, _ = await raw_session(
            server,
            [
                orjson.dumps({"id": 1, "connect": {"token": token}}),
                orjson.dumps(
                    {"id": 2, "subscribe": {"channel": f"exports:{bob['uuid']}"}}
                ),
            ],
        )
        assert replies[1] == {
            "id": 2,
            "error": {"code": 103, "message": "permission denied"},
        }
        # Bob is still served after all the bad clients above.
        await post_job(server, auth(bob), json={"url": STORY_URL})
        exports = f"exports:{bob['uuid']}"
        await watcher.wait_for(lambda: len(watcher.on(exports)) >= 1)
        assert watcher.on(exports)[0]["event"] == "job.created"
    finally:
        await bob_client.disconnect()
