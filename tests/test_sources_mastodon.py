"""Mastodon adapter against a local stand-in for a server's REST API."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporthub import netguard
from exporthub.sources.base import (
    Comment,
    ExportOptions,
    PermanentSourceError,
    TransientSourceError,
)
from exporthub.sources.mastodon import Mastodon
from fixture_servers import FixtureServer, json_response, serve

HOST = "mastodon.example"
ROOT = "111000000000000001"
DELETED = "111000000000000099"


def _account(acct: str) -> dict[str, Any]:
    username = acct.split("@")[0]
    domain = acct.split("@")[1] if "@" in acct else HOST
    return {
        "id": str(sum(map(ord, acct))),
        "username": username,
        "acct": acct,
        "display_name": username.title(),
        "locked": False,
        "bot": False,
        "url": f"https://{domain}/@{username}",
        "avatar": f"https://{HOST}/avatars/original/missing.png",
        "followers_count": 10,
        "following_count": 5,
        "statuses_count": 100,
    }


def _status(
    sid: str,
    acct: str,
    parent: str | None,
    minute: int,
    content: str,
    *,
    replies: int = 0,
    favourites: int = 0,
    second: int = 0,
) -> dict[str, Any]:
    if "@" in acct:
        # A remote post keeps its own server's address and id.
        user, domain = acct.split("@")
        url = f"https://{domain}/@{user}/{sid[-6:]}"
        uri = f"https://{domain}/users/{user}/statuses/{sid[-6:]}"
    else:
        url = f"https://{HOST}/@{acct}/{sid}"
        uri = f"https://{HOST}/users/{acct}/statuses/{sid}"
    return {
        "id": sid,
        "created_at": f"2024-06-01T10:{minute:02d}:{second:02d}.000Z",
        "in_reply_to_id": parent,
        "in_reply_to_account_id": "1" if parent else None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "en",
        "uri": uri,
        "url": url,
        "replies_count": replies,
        "reblogs_count": 0,
        "favourites_count": favourites,
        "edited_at": None,
        "content": content,
        "reblog": None,
        "account": _account(acct),
        "media_attachments": [],
        "mentions": [],
        "tags": [],
        "emojis": [],
        "card": None,
        "poll": None,
    }


R = _status(ROOT, "alice", None, 0, "<p>Root post</p>", replies=4)
D1 = _status(
    "111000000000000010",
    "bob@other.example",
    ROOT,
    1,
    '<p>Hello <span class="h-card"><a href="https://mastodon.example/@alice" '
    'class="u-url mention">@<span>alice</span></a></span> &amp; welcome, '
    "Grüße 日本語 🐘</p><p>Second &lt;para&gt;</p>",
    replies=2,
    favourites=4,
)
# D1a claims a reply that was deleted before its context could be read.
D1A = _status("111000000000000011", "carol", D1["id"], 2, "<p>a</p>", replies=1)
# D1b has three replies; the anonymous context only listed one.
D1B = _status("111000000000000012", "alice", D1["id"], 5, "<p>b</p>", replies=3)
D1B_I = _status("111000000000000013", "dave", D1B["id"], 6, "<p>b-i</p>")
D1B_II = _status("111000000000000020", "erin", D1B["id"], 7, "<p>b-ii</p>", replies=1)
D1B_II_X = _status(
    "111000000000000021", "bob@other.example", D1B_II["id"], 8, "<p>x</p>"
)
D2 = _status("111000000000000014", "carol", ROOT, 3, "<p>second</p>")
ORPHAN = _status("111000000000000015", "dave", DELETED, 4, "<p>orphan</p>")
# Remote clocks differ: D3 arrived last but was written first.
D3 = _status(
    "111000000000000016", "frank@third.example", ROOT, 0, "<p>early</p>", second=30
)

CONTEXTS = {
    ROOT: [D1, D1A, D1B, D1B_I, D2, ORPHAN, D3],
    D1B["id"]: [D1B_I, D1B_II, D1B_II_X],
}
STATUSES = {s["id"]: s for s in [R, D1, D1A, D1B, D1B_I, D1B_II, D1B_II_X, D2, D3]}


def _failure(sid: str) -> Response | None:
    if sid == "1090":
        return json_response({"error": "Record not found"}, 404)
    if sid == "1091":
        return json_response({"error": "This API requires an authenticated user"}, 401)
    if sid == "1092":
        reset = datetime.now(UTC) + timedelta(seconds=300)
        return json_response(
            {"error": "Too many requests"},
            429,
            {
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.isoformat().replace("+00:00", "Z"),
            },
        )
    if sid == "1093":
        return json_response({"error": "Too many requests"}, 429, {"Retry-After": "20"})
    if sid == "1094":
        return Response("<html>maintenance</html>", 503, media_type="text/html")
    if sid == "1095":
        return json_response({"error": "Gone"}, 410)
    return None


async def status(request: Request) -> Response:
    sid = request.path_params["sid"]
    if (failure := _failure(sid)) is not None:
        return failure
    if sid not in STATUSES:
        return json_response({"error": "Record not found"}, 404)
    return json_response(STATUSES[sid])


async def context(request: Request) -> Response:
    sid = request.path_params["sid"]
    if (failure := _failure(sid)) is not None:
        return failure
    if sid not in CONTEXTS and sid not in STATUSES:
        return json_response({"error": "Record not found"}, 404)
    if sid == D1A["id"]:
        return json_response({"error": "Record not found"}, 404)
    return json_response({"ancestors": [], "descendants": CONTEXTS.get(sid, [])})


APP = Starlette(
    routes=[
        Route("/api/v1/statuses/{sid}", status),
        Route("/api/v1/statuses/{sid}/context", context),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[FixtureServer]:
    with serve(APP) as running:
        yield running


@pytest.fixture
async def http(server: FixtureServer) -> AsyncIterator[httpx.AsyncClient]:
    server.requests.clear()
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _export(
    http: httpx.AsyncClient, server: FixtureServer, sid: str = ROOT, **options: Any
) -> list[Comment]:
    adapter = Mastodon(http, server.base_url)
    ref = f"{HOST}|{sid}"
    return [c async for c in adapter.comments(ref, ExportOptions(**options))]


def _ids(comments: list[Comment]) -> list[str]:
    return [c.id for c in comments]


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        (
            "https://mastodon.social/@Gargron/109000000000000001",
            "mastodon.social|109000000000000001",
        ),
        ("https://Fosstodon.org/@someone@mastodon.social/110/", "fosstodon.org|110"),
        ("mastodon.example/@alice_1/111?utm=x", "mastodon.example|111"),
        ("https://social.example.co.uk/@a.b-c/42#top", "social.example.co.uk|42"),
    ],
)
def test_parse_accepts_status_urls(url: str, ref: str) -> None:
    assert Mastodon.parse(url) == ref


@pytest.mark.parametrize(
    "url",
    [
        "https://mastodon.social/@Gargron",
        "https://mastodon.social/@Gargron/with-letters",
        "https://mastodon.social/users/Gargron/statuses/1",
        "https://127.0.0.1/@alice/1",
        "https://169.254.169.254/@alice/1",
        "https://localhost/@alice/1",
        "https://mastodon.social:8443/@alice/1",
        "https://user:secret@mastodon.social/@alice/1",
        "ftp://mastodon.social/@alice/1",
    ],
)
def test_parse_rejects_other_urls(url: str) -> None:
    assert Mastodon.parse(url) is None


async def test_flat_descendants_are_exported_in_thread_order(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert [(c.id, c.parent_id, c.depth) for c in exported] == [
        (D3["id"], ROOT, 0),
        (D1["id"], ROOT, 0),
        (D1A["id"], D1["id"], 1),
        (D1B["id"], D1["id"], 1),
        (D1B_I["id"], D1B["id"], 2),
        (D1B_II["id"], D1B["id"], 2),
        (D1B_II_X["id"], D1B_II["id"], 3),
        (D2["id"], ROOT, 0),
        (ORPHAN["id"], DELETED, 1),
    ]


async def test_replies_missing_from_the_context_are_read_from_their_parent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server)
    assert server.paths() == [
        f"/api/v1/statuses/{ROOT}",
        f"/api/v1/statuses/{ROOT}/context",
        f"/api/v1/statuses/{D1B['id']}/context",
        f"/api/v1/statuses/{D1A['id']}/context",
    ]


async def test_comment_values(http: httpx.AsyncClient, server: FixtureServer) -> None:
    exported = await _export(http, server)
    assert exported[1] == Comment(
        id=D1["id"],
        parent_id=ROOT,
        depth=0,
        author="bob@other.example",
        published_at=datetime(2024, 6, 1, 10, 1, tzinfo=UTC),
        text="Hello @alice & welcome, Grüße 日本語 🐘\nSecond <para>",
        permalink="https://other.example/@bob/000010",
        likes=4,
        replies=2,
    )


async def test_total_counts_every_reply_found(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    adapter = Mastodon(http, server.base_url)
    stream = adapter.comments(f"{HOST}|{ROOT}", ExportOptions())
    await anext(stream)
    await stream.aclose()
    assert adapter.total == 9


async def test_replies_false_keeps_direct_replies_without_extra_reads(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, replies=False)
    assert _ids(exported) == [D3["id"], D1["id"], D2["id"]]
    assert len(server.requests) == 2


async def test_limit_caps_the_export(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, limit=2)
    assert _ids(exported) == [D3["id"], D1["id"]]


async def test_min_timestamp_keeps_newer_replies(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    moment = int(datetime(2024, 6, 1, 10, 5, tzinfo=UTC).timestamp())
    exported = await _export(http, server, min_timestamp=moment)
    assert _ids(exported) == [D1B["id"], D1B_I["id"], D1B_II["id"], D1B_II_X["id"]]


async def test_max_timestamp_keeps_older_replies(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    moment = int(datetime(2024, 6, 1, 10, 2, tzinfo=UTC).timestamp())
    exported = await _export(http, server, max_timestamp=moment)
    assert _ids(exported) == [D3["id"], D1["id"], D1A["id"]]


async def test_server_is_taken_from_the_reference_when_no_base_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The instance's name is checked before use; answer the lookup here.
    async def public(host: str, port: int) -> list[ipaddress.IPv4Address]:
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(netguard, "_lookup", public)
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        # Answered in-process: nothing leaves the machine.
        seen.append(str(request.url))
        if request.url.path.endswith("/context"):
            return httpx.Response(200, json={"ancestors": [], "descendants": []})
        return httpx.Response(200, json=R)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        adapter = Mastodon(client, Mastodon.default_api)
        async for _ in adapter.comments(f"{HOST}|{ROOT}", ExportOptions()):
            pass
    assert seen == [
        f"https://{HOST}/api/v1/statuses/{ROOT}",
        f"https://{HOST}/api/v1/statuses/{ROOT}/context",
    ]


@pytest.mark.parametrize(
    ("sid", "reason"),
    [
        ("1090", "this Mastodon post does not exist, was deleted or is not public"),
        ("1095", "this Mastodon post does not exist, was deleted or is not public"),
        ("1091", "this Mastodon server shows posts to signed-in users only"),
    ],
)
async def test_refusals_are_permanent_with_a_reason(
    http: httpx.AsyncClient, server: FixtureServer, sid: str, reason: str
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, sid)
    assert raised.value.reason == reason


async def test_rate_limit_is_transient_with_retry_after(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, "1093")
    assert raised.value.reason == "Mastodon rate limit reached (HTTP 429)"
    assert raised.value.retry_after == 20.0


async def test_rate_limit_without_retry_after_waits_for_the_reset(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, "1092")
    assert raised.value.retry_after is not None
    assert 200 < raised.value.retry_after <= 300


async def test_server_error_is_transient(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, "1094")
    assert raised.value.reason == "Mastodon answered HTTP 503"
