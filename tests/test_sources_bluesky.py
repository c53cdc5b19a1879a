"""Bluesky adapter against a local stand-in for the public AppView."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporthub.sources.base import (
    Comment,
    ExportOptions,
    PermanentSourceError,
    TransientSourceError,
)
from exporthub.sources.bluesky import Bluesky
from fixture_servers import FixtureServer, json_response, serve

VIEW = "app.bsky.feed.defs#threadViewPost"
ALICE = ("alice.example.com", "did:plc:ewvi7nxzyoun6zhxrhs64oiz")
BOB = ("bob.bsky.social", "did:plc:z72i7hdynmk6r22z27h6tvur")
CARA = ("cara.bsky.social", "did:plc:4llrhdclvdlmmynkwsmg5tdc")
# An account whose handle no longer verifies.
DAN = ("handle.invalid", "did:plc:vwzwgnygau7ed7b7wt5ux7y2")
ROOT_RKEY = "3kabcroot2222"


def _uri(who: tuple[str, str], rkey: str) -> str:
    return f"at://{who[1]}/app.bsky.feed.post/{rkey}"


ROOT_URI = _uri(ALICE, ROOT_RKEY)


def _post(
    who: tuple[str, str],
    rkey: str,
    text: str,
    created: str,
    *,
    likes: int = 0,
    replies: int = 0,
    parent: str | None = ROOT_URI,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "createdAt": created,
        "langs": ["en"],
        "text": text,
    }
    if parent:
        record["reply"] = {
            "parent": {"cid": "bafyreiparent", "uri": parent},
            "root": {"cid": "bafyreiroot", "uri": ROOT_URI},
        }
    return {
        "uri": _uri(who, rkey),
        "cid": f"bafyrei{rkey}",
        "author": {
            "did": who[1],
            "handle": who[0],
            "displayName": who[0].split(".")[0].title(),
            "avatar": f"https://cdn.bsky.app/img/avatar/plain/{who[1]}/x@jpeg",
            "viewer": {"muted": False, "blockedBy": False},
            "labels": [],
            "createdAt": "2023-04-01T00:00:00.000Z",
        },
        "record": record,
        "replyCount": replies,
        "repostCount": 0,
        "likeCount": likes,
        "quoteCount": 0,
        "indexedAt": created,
        "viewer": {"threadMuted": False, "embeddingDisabled": False},
        "labels": [],
    }


def _view(post: dict[str, Any], replies: list[Any] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"$type": VIEW, "post": post}
    if replies is not None:
        node["replies"] = replies
    return node


A = _post(
    BOB,
    "3kaaa",
    "Hello & <welcome> 日本語 🎉\n\nsecond line",
    "2024-11-20T12:01:00.000Z",
    likes=7,
    replies=2,
)
A1 = _post(
    CARA,
    "3kaa1",
    "nanosecond clock",
    "2024-11-20T12:05:00.123456789Z",
    parent=A["uri"],
)
A2 = _post(
    ALICE, "3kaa2", "thanks", "2024-11-20T12:06:00+00:00", replies=1, parent=A["uri"]
)
A2A = _post(
    BOB, "3ka2a", "you are welcome", "2024-11-20T12:07:00.000Z", parent=A2["uri"]
)
B = _post(DAN, "3kbbb", "second reply", "2024-11-20T12:10:00.000Z", replies=2)
B1 = _post(CARA, "3kbb1", "below the cut", "2024-11-20T12:11:00.000Z", parent=B["uri"])
B2 = _post(
    BOB, "3kbb2", "also cut", "2024-11-20T12:12:00.000Z", replies=1, parent=B["uri"]
)
B2A = _post(ALICE, "3kb2a", "deepest", "2024-11-20T12:13:00.000Z", parent=B2["uri"])
C = _post(CARA, "3kccc", "last one", "2024-11-20T12:20:00.000Z")
# A client wrote a time that is not one; Bluesky still indexed the post.
C["record"]["createdAt"] = "20 Nov, noon"

ROOT = _view(
    _post(
        ALICE,
        ROOT_RKEY,
        "What do you think?",
        "2024-11-20T12:00:00.000Z",
        replies=5,
        parent=None,
    ),
    [
        _view(A, [_view(A1, []), _view(A2, [_view(A2A, [])])]),
        {
            "$type": "app.bsky.feed.defs#notFoundPost",
            "uri": _uri(CARA, "3kgone"),
            "notFound": True,
        },
        # The tree is cut here: B says it has replies but carries none.
        _view(B),
        {
            "$type": "app.bsky.feed.defs#blockedPost",
            "uri": _uri(CARA, "3kblock"),
            "blocked": True,
            "author": {"did": CARA[1], "viewer": {"blockedBy": True}},
        },
        _view(C, []),
    ],
)
THREADS = {
    ROOT_URI: ROOT,
    B["uri"]: _view(B, [_view(B1, []), _view(B2, [_view(B2A, [])])]),
    _uri(ALICE, "3kblocked22"): {
        "$type": "app.bsky.feed.defs#blockedPost",
        "uri": _uri(ALICE, "3kblocked22"),
        "blocked": True,
        "author": {"did": ALICE[1], "viewer": {"blockedBy": True}},
    },
}
ORDER = [A, A1, A2, A2A, B, B1, B2, B2A, C]


async def resolve_handle(request: Request) -> Response:
    handle = request.query_params["handle"]
    for known in (ALICE, BOB, CARA):
        if known[0] == handle:
            return json_response({"did": known[1]})
    return json_response(
        {"error": "InvalidRequest", "message": "Unable to resolve handle"}, 400
    )


async def get_post_thread(request: Request) -> Response:
    uri = request.query_params["uri"]
    rkey = uri.rsplit("/", 1)[-1]
    if rkey == "3kratelimit":
        return json_response(
            {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
            429,
            {"Retry-After": "15"},
        )
    if rkey == "3kreset":
        reset = int(time.time()) + 3600
        return json_response(
            {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
            429,
            {
                "ratelimit-limit": "3000",
                "ratelimit-remaining": "0",
                "ratelimit-reset": str(reset),
                "ratelimit-policy": "3000;w=300",
            },
        )
    if rkey == "3kservererr":
        return json_response({"error": "InternalServerError"}, 500)
    if uri not in THREADS:
        return json_response(
            {"error": "NotFound", "message": f"Post not found: {uri}"}, 400
        )
    return json_response({"thread": THREADS[uri]})


APP = Starlette(
    routes=[
        Route("/xrpc/com.atproto.identity.resolveHandle", resolve_handle),
        Route("/xrpc/app.bsky.feed.getPostThread", get_post_thread),
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


REF = f"{ALICE[0]}/{ROOT_RKEY}"


async def _export(
    http: httpx.AsyncClient, server: FixtureServer, ref: str = REF, **options: Any
) -> list[Comment]:
    adapter = Bluesky(http, server.base_url)
    return [c async for c in adapter.comments(ref, ExportOptions(**options))]


def _uris(comments: list[Comment]) -> list[str]:
    return [c.id for c in comments]


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        (f"https://bsky.app/profile/alice.example.com/post/{ROOT_RKEY}", REF),
        (f"https://bsky.app/profile/Alice.Example.com/post/{ROOT_RKEY}/", REF),
        (f"bsky.app/profile/alice.example.com/post/{ROOT_RKEY}?ref=x", REF),
        (
            f"https://bsky.app/profile/{ALICE[1]}/post/{ROOT_RKEY}",
            f"{ALICE[1]}/{ROOT_RKEY}",
        ),
        (
            f"https://bsky.app/profile/did%3Aplc%3Aewvi7nxzyoun6zhxrhs64oiz/post/{ROOT_RKEY}",
            f"{ALICE[1]}/{ROOT_RKEY}",
        ),
    ],
)
def test_parse_accepts_post_urls(url: str, ref: str) -> None:
    assert Bluesky.parse(url) == ref


@pytest.mark.parametrize(
    "url",
    [
        "https://bsky.app/profile/alice.example.com",
        "https://bsky.app/profile/alice.example.com/feed/aaa",
        "https://bsky.app/profile/not_a_handle/post/3kabcroot2222",
        "https://bsky.app/profile/alice.example.com/post/..",
        "https://bsky.app.evil.example/profile/alice.example.com/post/3kabc",
        "https://staging.example.com/profile/alice.example.com/post/3kabc",
    ],
)
def test_parse_rejects_other_urls(url: str) -> None:
    assert Bluesky.parse(url) is None


async def test_whole_tree_is_exported_in_thread_order(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert [(c.id, c.parent_id, c.depth) for c in exported] == [
        (A["uri"], ROOT_URI, 0),
        (A1["uri"], A["uri"], 1),
        (A2["uri"], A["uri"], 1),
        (A2A["uri"], A2["uri"], 2),
        (B["uri"], ROOT_URI, 0),
        (B1["uri"], B["uri"], 1),
        (B2["uri"], B["uri"], 1),
        (B2A["uri"], B2["uri"], 2),
        (C["uri"], ROOT_URI, 0),
    ]


async def test_handle_is_resolved_then_the_thread_read(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server, limit=1)
    assert [(s.path, s.params) for s in server.requests] == [
        ("/xrpc/com.atproto.identity.resolveHandle", {"handle": ALICE[0]}),
        (
            "/xrpc/app.bsky.feed.getPostThread",
            {"uri": ROOT_URI, "depth": "1000", "parentHeight": "0"},
        ),
    ]


async def test_did_in_the_url_needs_no_resolution(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server, f"{ALICE[1]}/{ROOT_RKEY}", limit=1)
    assert server.paths() == ["/xrpc/app.bsky.feed.getPostThread"]


async def test_cut_branch_is_read_again_once(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server)
    reads = [s.params["uri"] for s in server.to("/xrpc/app.bsky.feed.getPostThread")]
    assert reads == [ROOT_URI, B["uri"]]


async def test_comment_values(http: httpx.AsyncClient, server: FixtureServer) -> None:
    exported = await _export(http, server)
    assert exported[0] == Comment(
        id=A["uri"],
        parent_id=ROOT_URI,
        depth=0,
        author="bob.bsky.social",
        published_at=datetime(2024, 11, 20, 12, 1, tzinfo=UTC),
        text="Hello & <welcome> 日本語 🎉\nsecond line",
        permalink="https://bsky.app/profile/bob.bsky.social/post/3kaaa",
        likes=7,
        replies=2,
    )


async def test_nanosecond_timestamps_are_read(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert exported[1].published_at == datetime(
        2024, 11, 20, 12, 5, 0, 123456, tzinfo=UTC
    )


async def test_unreadable_declared_time_falls_back_to_the_indexed_time(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert exported[-1].published_at == datetime(2024, 11, 20, 12, 20, tzinfo=UTC)


async def test_unverified_handle_falls_back_to_the_did(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert (exported[4].author, exported[4].permalink) == (
        DAN[1],
        f"https://bsky.app/profile/{DAN[1]}/post/3kbbb",
    )


async def test_total_counts_visible_replies_then_grows_with_cut_branches(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    adapter = Bluesky(http, server.base_url)
    seen = []
    async for _ in adapter.comments(REF, ExportOptions()):
        seen.append(adapter.total)
    assert seen == [6, 6, 6, 6, 6, 9, 9, 9, 9]


async def test_replies_false_keeps_direct_replies_without_rereading(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, replies=False)
    assert _uris(exported) == [A["uri"], B["uri"], C["uri"]]
    assert len(server.to("/xrpc/app.bsky.feed.getPostThread")) == 1


async def test_limit_stops_the_walk(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, limit=2)
    assert _uris(exported) == [A["uri"], A1["uri"]]


async def test_min_timestamp_keeps_newer_replies(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    moment = int(datetime(2024, 11, 20, 12, 11, tzinfo=UTC).timestamp())
    exported = await _export(http, server, min_timestamp=moment)
    assert _uris(exported) == [B1["uri"], B2["uri"], B2A["uri"], C["uri"]]


async def test_max_timestamp_keeps_older_replies(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    moment = int(datetime(2024, 11, 20, 12, 6, tzinfo=UTC).timestamp())
    exported = await _export(http, server, max_timestamp=moment)
    assert _uris(exported) == [A["uri"], A1["uri"], A2["uri"]]


async def test_unknown_handle_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"nobody.example.com/{ROOT_RKEY}")
    assert raised.value.reason == "the Bluesky handle nobody.example.com does not exist"


async def test_unknown_post_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"{ALICE[1]}/3kmissing22")
    assert raised.value.reason == "this Bluesky post does not exist"


async def test_blocked_post_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"{ALICE[1]}/3kblocked22")
    assert raised.value.reason == (
        "this Bluesky post was deleted or is blocked from public view"
    )


async def test_rate_limit_is_transient_with_retry_after(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, f"{ALICE[1]}/3kratelimit")
    assert raised.value.reason == "Bluesky rate limit reached (HTTP 429)"
    assert raised.value.retry_after == 15.0


async def test_rate_limit_without_retry_after_waits_for_the_reset(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, f"{ALICE[1]}/3kreset")
    assert raised.value.retry_after is not None
    assert 3000 < raised.value.retry_after <= 3600


async def test_server_error_is_transient(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, f"{ALICE[1]}/3kservererr")
    assert raised.value.reason == "Bluesky answered HTTP 500"
