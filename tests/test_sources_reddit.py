"""Reddit adapter against a local stand-in for the public JSON endpoints."""

from __future__ import annotations

import html
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
from exporthub.sources.reddit import USER_AGENT, Reddit
from fixture_servers import FixtureServer, json_response, serve

POST = "1b2c3d4"
BIG = "1bigpst"
PERMALINK = "/r/Python/comments/1b2c3d4/exporting_comments/"
START = 1709600000
STEP = 600


def _at(n: int) -> float:
    """Comment kaa00nn was written n steps after the post."""
    return float(START + n * STEP)


def _t1(
    n: int,
    parent: str,
    replies: list[dict[str, Any]] | None = None,
    *,
    body: str | None = None,
    body_html: str | None = None,
    author: str | None = None,
    post: str = POST,
) -> dict[str, Any]:
    cid = f"kaa{n:04d}"
    text = body if body is not None else f"Comment number {n}"
    data: dict[str, Any] = {
        "id": cid,
        "name": f"t1_{cid}",
        "parent_id": parent,
        "link_id": f"t3_{post}",
        "author": author or f"user_{n}",
        "body": text,
        "body_html": body_html
        if body_html is not None
        else f'<div class="md"><p>{html.escape(text)}</p>\n</div>',
        "created_utc": _at(n),
        "created": _at(n),
        "score": n * 2,
        "ups": n * 2,
        "permalink": f"{PERMALINK}{cid}/",
        "subreddit": "Python",
        "depth": 0,
        "replies": _listing(replies) if replies else "",
    }
    if not data["body_html"]:
        del data["body_html"]
    return {"kind": "t1", "data": data}


def _more(parent: str, children: list[str], count: int, depth: int) -> dict[str, Any]:
    mid = children[0] if children else "_"
    return {
        "kind": "more",
        "data": {
            "count": count,
            "name": f"t1_{mid}",
            "id": mid,
            "parent_id": parent,
            "depth": depth,
            "children": children,
        },
    }


def _listing(children: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "Listing",
        "data": {
            "after": None,
            "dist": None,
            "modhash": "",
            "geo_filter": "",
            "children": children,
            "before": None,
        },
    }


def _post(post: str, num_comments: int) -> dict[str, Any]:
    return _listing(
        [
            {
                "kind": "t3",
                "data": {
                    "id": post,
                    "name": f"t3_{post}",
                    "title": "Exporting comments",
                    "subreddit": "Python",
                    "author": "op_user",
                    "num_comments": num_comments,
                    "created_utc": float(START),
                    "permalink": PERMALINK,
                },
            }
        ]
    )


def _thread() -> list[dict[str, Any]]:
    """The first answer for POST: nested listings with three kinds of gap."""
    top = f"t3_{POST}"
    cut = _more("t1_kaa0003", [], 0, 3)
    return [
        _post(POST, 17),
        _listing(
            [
                _t1(
                    1,
                    top,
                    [
                        _t1(2, "t1_kaa0001", [_t1(3, "t1_kaa0002", [cut])]),
                        _t1(
                            4,
                            "t1_kaa0001",
                            [_t1(5, "t1_kaa0004")],
                            body="[deleted]",
                            author="[deleted]",
                        ),
                    ],
                    body="Café & crème, 日本語 <b>not bold</b>\n\nSecond paragraph",
                    body_html=(
                        '<div class="md"><p>Café &amp; crème, 日本語 '
                        "&lt;b&gt;not bold&lt;/b&gt;</p>\n\n"
                        "<p>Second paragraph</p>\n</div>"
                    ),
                ),
                _t1(6, top),
                _t1(7, top, [_more("t1_kaa0007", ["kaa0009", "kaa0010"], 3, 1)]),
                _more(top, ["kaa0011", "kaa0012"], 5, 0),
            ]
        ),
    ]


def _continued() -> list[dict[str, Any]]:
    """The answer for ?comment=kaa0003: that comment and what was cut."""
    return [
        _post(POST, 17),
        _listing(
            [
                _t1(
                    3,
                    "t1_kaa0002",
                    [_t1(13, "t1_kaa0003", [_t1(14, "t1_kaa0013")])],
                )
            ]
        ),
    ]


# What morechildren answers for each id: flat things, a child listed before
# its parent, and a further placeholder.
MORE = {
    "kaa0009": [_t1(15, "t1_kaa0009"), _t1(9, "t1_kaa0007")],
    "kaa0010": [_t1(10, "t1_kaa0007")],
    "kaa0011": [_t1(11, f"t3_{POST}")],
    "kaa0012": [
        _t1(12, f"t3_{POST}", body="[removed]", author="[deleted]"),
        _more(f"t3_{POST}", ["kaa0016"], 1, 0),
    ],
    "kaa0016": [
        _t1(16, f"t3_{POST}", body="line one\r\n\r\nline two & <tag>", body_html="")
    ],
}
BIG_IDS = [f"kbb{n:04d}" for n in range(150)]

ERRORS = {
    "private1": (403, {"reason": "private", "message": "Forbidden", "error": 403}),
    "quarant1": (403, {"reason": "quarantined", "message": "Forbidden", "error": 403}),
    "banned01": (404, {"reason": "banned", "message": "Not Found", "error": 404}),
    "missing1": (404, {"message": "Not Found", "error": 404}),
    "boom0001": (502, {"message": "Bad Gateway", "error": 502}),
}


def _escape_bodies(value: Any) -> Any:
    """What Reddit sends without raw_json=1: HTML escaped once more."""
    if isinstance(value, dict):
        return {
            k: html.escape(v) if k == "body_html" and v else _escape_bodies(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_escape_bodies(v) for v in value]
    return value


async def comments(request: Request) -> Response:
    post = request.path_params["post"]
    if post in ERRORS:
        status, body = ERRORS[post]
        return json_response(body, status)
    if post == "ratelim1":
        return json_response(
            {"message": "Too Many Requests", "error": 429},
            429,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "120"},
        )
    if post == "ratelim2":
        return json_response({"error": 429}, 429, {"Retry-After": "7"})
    if post == BIG:
        answer = [_post(BIG, 150), _listing([_more(f"t3_{BIG}", BIG_IDS, 150, 0)])]
    elif post == POST:
        comment = request.query_params.get("comment")
        answer = _continued() if comment == "kaa0003" else _thread()
    else:
        return json_response({"message": "Not Found", "error": 404}, 404)
    if request.query_params.get("raw_json") != "1":
        answer = _escape_bodies(answer)
    return json_response(answer)


async def morechildren(request: Request) -> Response:
    link = request.query_params["link_id"]
    ids = request.query_params["children"].split(",")
    if link == f"t3_{BIG}":
        things = [
            {
                "kind": "t1",
                "data": {
                    **_t1(0, link, post=BIG)["data"],
                    "id": cid,
                    "name": f"t1_{cid}",
                    "permalink": f"/r/Python/comments/{BIG}/big/{cid}/",
                },
            }
            for cid in ids
        ]
    else:
        things = [thing for cid in ids for thing in MORE[cid]]
    return json_response({"json": {"errors": [], "data": {"things": things}}})


APP = Starlette(
    routes=[
        Route("/comments/{post}.json", comments),
        Route("/api/morechildren.json", morechildren),
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
    http: httpx.AsyncClient, server: FixtureServer, post: str = POST, **options: Any
) -> list[Comment]:
    adapter = Reddit(http, server.base_url)
    return [c async for c in adapter.comments(post, ExportOptions(**options))]


def _ids(comments: list[Comment]) -> list[str]:
    return [c.id for c in comments]


@pytest.mark.parametrize(
    "url",
    [
        "https://www.reddit.com/r/Python/comments/1b2c3d4/exporting_comments/",
        "https://reddit.com/r/Python/comments/1b2c3d4",
        "https://old.reddit.com/r/Python/comments/1b2c3d4/x/?sort=new",
        "https://new.reddit.com/r/Python/comments/1b2c3d4/x/kaa0001/",
        "https://www.reddit.com/comments/1b2c3d4/",
        "https://redd.it/1b2c3d4",
        "www.reddit.com/r/Python/comments/1B2C3D4/x",
    ],
)
def test_parse_accepts_post_urls(url: str) -> None:
    assert Reddit.parse(url) == POST


@pytest.mark.parametrize(
    "url",
    [
        "https://www.reddit.com/r/Python/",
        "https://www.reddit.com/user/someone/",
        "https://www.reddit.com/r/Python/s/AbCdEf",
        "https://reddit.com.evil.example/r/x/comments/1b2c3d4/",
        "https://redd.it/",
        "https://example.com/r/Python/comments/1b2c3d4/",
    ],
)
def test_parse_rejects_other_urls(url: str) -> None:
    assert Reddit.parse(url) is None


async def test_whole_tree_is_exported_in_thread_order(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert [(c.id, c.parent_id, c.depth) for c in exported] == [
        ("kaa0001", POST, 0),
        ("kaa0002", "kaa0001", 1),
        ("kaa0003", "kaa0002", 2),
        ("kaa0013", "kaa0003", 3),
        ("kaa0014", "kaa0013", 4),
        ("kaa0005", "kaa0004", 2),
        ("kaa0006", POST, 0),
        ("kaa0007", POST, 0),
        ("kaa0009", "kaa0007", 1),
        ("kaa0015", "kaa0009", 2),
        ("kaa0010", "kaa0007", 1),
        ("kaa0011", POST, 0),
        ("kaa0016", POST, 0),
    ]


async def test_requests_follow_the_documented_shape(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server)
    assert [(s.path, s.params) for s in server.requests] == [
        (f"/comments/{POST}.json", {"limit": "500", "raw_json": "1"}),
        (
            f"/comments/{POST}.json",
            {"limit": "500", "raw_json": "1", "comment": "kaa0003"},
        ),
        (
            "/api/morechildren.json",
            {
                "api_type": "json",
                "link_id": f"t3_{POST}",
                "children": "kaa0009,kaa0010",
                "raw_json": "1",
            },
        ),
        (
            "/api/morechildren.json",
            {
                "api_type": "json",
                "link_id": f"t3_{POST}",
                "children": "kaa0011,kaa0012",
                "raw_json": "1",
            },
        ),
        (
            "/api/morechildren.json",
            {
                "api_type": "json",
                "link_id": f"t3_{POST}",
                "children": "kaa0016",
                "raw_json": "1",
            },
        ),
    ]


async def test_requests_send_a_descriptive_user_agent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server, limit=1)
    assert server.requests[0].headers["user-agent"] == USER_AGENT


async def test_comment_values(http: httpx.AsyncClient, server: FixtureServer) -> None:
    exported = await _export(http, server)
    assert exported[0] == Comment(
        id="kaa0001",
        parent_id=POST,
        depth=0,
        author="user_1",
        published_at=datetime.fromtimestamp(_at(1), UTC),
        text="Café & crème, 日本語 <b>not bold</b>\nSecond paragraph",
        permalink=f"https://www.reddit.com{PERMALINK}kaa0001/",
        likes=2,
        replies=2,
    )


async def test_body_without_html_is_used_as_plain_text(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert exported[-1].text == "line one\nline two & <tag>"


async def test_deleted_and_removed_comments_are_skipped(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    ids = _ids(await _export(http, server))
    assert "kaa0004" not in ids
    assert "kaa0012" not in ids


async def test_reply_counts_include_hidden_replies(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = {c.id: c.replies for c in await _export(http, server)}
    assert (exported["kaa0003"], exported["kaa0006"], exported["kaa0007"]) == (1, 0, 2)


async def test_total_is_the_post_comment_count(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    adapter = Reddit(http, server.base_url)
    stream = adapter.comments(POST, ExportOptions())
    await anext(stream)
    await stream.aclose()
    assert adapter.total == 17


async def test_large_placeholder_is_expanded_in_batches_of_one_hundred(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, BIG)
    assert _ids(exported) == BIG_IDS
    batches = [
        s.params["children"].split(",") for s in server.to("/api/morechildren.json")
    ]
    assert batches == [BIG_IDS[:100], BIG_IDS[100:]]


async def test_replies_false_fetches_no_reply_placeholders(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, replies=False)
    assert _ids(exported) == ["kaa0001", "kaa0006", "kaa0007", "kaa0011", "kaa0016"]
    assert [s.params.get("children") for s in server.requests] == [
        None,
        "kaa0011,kaa0012",
        "kaa0016",
    ]


async def test_limit_stops_before_further_requests(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, limit=2)
    assert _ids(exported) == ["kaa0001", "kaa0002"]
    assert len(server.requests) == 1


async def test_min_timestamp_keeps_newer_comments(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, min_timestamp=int(_at(9)))
    assert _ids(exported) == [
        "kaa0013",
        "kaa0014",
        "kaa0009",
        "kaa0015",
        "kaa0010",
        "kaa0011",
        "kaa0016",
    ]


async def test_max_timestamp_skips_fetching_replies_of_later_comments(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, max_timestamp=int(_at(3)) - 1)
    assert _ids(exported) == ["kaa0001", "kaa0002"]
    assert [s.params.get("children") for s in server.requests] == [
        None,
        "kaa0011,kaa0012",
        "kaa0016",
    ]


@pytest.mark.parametrize(
    ("post", "reason"),
    [
        ("private1", "the subreddit is private"),
        ("quarant1", "the subreddit is quarantined and needs a signed-in account"),
        ("banned01", "the subreddit is banned"),
        ("missing1", "Reddit post missing1 does not exist"),
    ],
)
async def test_refusals_are_permanent_with_a_reason(
    http: httpx.AsyncClient, server: FixtureServer, post: str, reason: str
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, post)
    assert raised.value.reason == reason


async def test_rate_limit_waits_for_the_announced_reset(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, "ratelim1")
    assert raised.value.reason == "Reddit rate limit reached (HTTP 429)"
    assert raised.value.retry_after == 120.0


async def test_rate_limit_prefers_retry_after(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, "ratelim2")
    assert raised.value.retry_after == 7.0


async def test_server_error_is_transient(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, "boom0001")
    assert raised.value.reason == "Reddit answered HTTP 502"
