"""YouTube adapter against a local stand-in for the Data API v3."""

from __future__ import annotations

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
from exporthub.sources.youtube import YouTube
from fixture_servers import FixtureServer, json_response, serve

KEY = "test-key"
VIDEO = "M7lc1UVf-VE"
CHANNEL = "UC_x5XG1OV2P6uZZ5FSM9Ttw"


def _comment(
    cid: str,
    author: str,
    text: str,
    published: str,
    likes: int,
    parent: str | None = None,
) -> dict[str, Any]:
    snippet: dict[str, Any] = {
        "channelId": CHANNEL,
        "videoId": VIDEO,
        "textDisplay": text,
        "textOriginal": "(unused)",
        "authorDisplayName": author,
        "authorProfileImageUrl": "https://yt3.ggpht.com/a/default-user",
        "authorChannelUrl": f"http://www.youtube.com/{author}",
        "authorChannelId": {"value": "UCa1b2c3d4e5f6g7h8i9j0kl"},
        "canRate": True,
        "viewerRating": "none",
        "likeCount": likes,
        "publishedAt": published,
        "updatedAt": published,
    }
    if parent:
        snippet["parentId"] = parent
    return {
        "kind": "youtube#comment",
        "etag": f"etag-{cid}",
        "id": cid,
        "snippet": snippet,
    }


def _thread(
    top: dict[str, Any], total: int, inlined: list[dict[str, Any]]
) -> dict[str, Any]:
    thread: dict[str, Any] = {
        "kind": "youtube#commentThread",
        "etag": f"etag-thread-{top['id']}",
        "id": top["id"],
        "snippet": {
            "channelId": CHANNEL,
            "videoId": VIDEO,
            "topLevelComment": top,
            "canReply": True,
            "totalReplyCount": total,
            "isPublic": True,
        },
    }
    if inlined:
        thread["replies"] = {"comments": inlined}
    return thread


# Three pages of threads, newest first as order=time gives them.
T1 = _comment(
    "UgzT1aaaa",
    "@anna",
    "Great video &amp; thanks!<br><br>"
    "Grüße aus Köln, 日本語 👋 &quot;quoted&quot; &#39;x&#39;",
    "2024-03-05T10:00:00Z",
    12,
)
T1_R1 = _comment(
    "UgzT1aaaa.R1",
    "@bob",
    '<a href="http://www.youtube.com/channel/UCx">@anna</a> agreed',
    "2024-03-05T11:00:00Z",
    1,
    "UgzT1aaaa",
)
T1_R2 = _comment(
    "UgzT1aaaa.R2",
    "@carl",
    "Same here &lt;3",
    "2024-03-05T12:00:00Z",
    0,
    "UgzT1aaaa",
)
T2 = _comment("UgzT2bbbb", "@bob", "First!", "2024-03-04T09:00:00Z", 3)
# Seven replies announced; one was deleted, so the list holds six.
T2_REPLIES = [
    _comment(
        f"UgzT2bbbb.R{n}",
        f"@fan{n}",
        f"reply {n}",
        f"2024-03-04T1{n}:00:00Z",
        n,
        "UgzT2bbbb",
    )
    for n in range(1, 7)
]
T3 = _comment("UgzT3cccc", "@dora", "Older one", "2024-03-01T08:00:00Z", 0)
T4 = _comment("UgzT4dddd", "@emil", "Oldest", "2024-02-20T08:00:00Z", 5)

PAGES: dict[str | None, dict[str, Any]] = {
    None: {
        "items": [
            # Inlined replies come newest first.
            _thread(T1, 2, [T1_R2, T1_R1]),
            _thread(T2, 7, list(reversed(T2_REPLIES))[:5]),
        ],
        "nextPageToken": "QURTSl9pMk",
    },
    "QURTSl9pMk": {"items": [_thread(T3, 0, [])], "nextPageToken": "QURTSl9pMl"},
    "QURTSl9pMl": {"items": [_thread(T4, 0, [])]},
}
# The reply list is paged too, and returned newest first.
REPLY_PAGES: dict[str | None, dict[str, Any]] = {
    None: {
        "items": list(reversed(T2_REPLIES))[:4],
        "nextPageToken": "Z2V0X25leHQ",
    },
    "Z2V0X25leHQ": {"items": list(reversed(T2_REPLIES))[4:]},
}


def _error(status: int, reason: str, message: str, domain: str) -> Response:
    return json_response(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
            }
        },
        status,
    )


def _key_error(request: Request) -> Response | None:
    if request.query_params.get("key") == KEY:
        return None
    if request.query_params.get("key") == "expired-key":
        return json_response(
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "errors": [
                        {
                            "message": "API key not valid.",
                            "domain": "global",
                            "reason": "badRequest",
                        }
                    ],
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                        }
                    ],
                }
            },
            400,
        )
    return _error(400, "keyInvalid", "Bad Request", "usageLimits")


def _listing(kind: str, page: dict[str, Any]) -> dict[str, Any]:
    body = {
        "kind": kind,
        "etag": "etag-page",
        "pageInfo": {
            "totalResults": len(page["items"]),
            "resultsPerPage": len(page["items"]),
        },
        **page,
    }
    return body


async def videos(request: Request) -> Response:
    if (failure := _key_error(request)) is not None:
        return failure
    video = request.query_params["id"]
    if video == "quota000000":
        return _error(
            403,
            "quotaExceeded",
            "The request cannot be completed because you have exceeded your"
            ' <a href="/youtube/v3/getting-started#quota">quota</a>.',
            "youtube.quota",
        )
    if video == "ratelimit00":
        return json_response({"error": {"code": 429}}, 429, {"Retry-After": "30"})
    if video == "servererr00":
        return json_response({"error": {"code": 503}}, 503)
    items = []
    if video in (VIDEO, "disabled000", "private0000", "gone0000000"):
        statistics = {"viewCount": "1043", "likeCount": "71", "favoriteCount": "0"}
        if video != "disabled000":
            statistics["commentCount"] = "12"
        items = [{"kind": "youtube#video", "id": video, "statistics": statistics}]
    return json_response(
        {
            "kind": "youtube#videoListResponse",
            "etag": "etag-videos",
            "items": items,
            "pageInfo": {"totalResults": len(items), "resultsPerPage": len(items)},
        }
    )


async def comment_threads(request: Request) -> Response:
    if (failure := _key_error(request)) is not None:
        return failure
    video = request.query_params["videoId"]
    if video == "disabled000":
        return _error(
            403,
            "commentsDisabled",
            "The video identified by the videoId parameter has disabled comments.",
            "youtube.commentThread",
        )
    if video == "private0000":
        return _error(403, "forbidden", "The request is not authorized.", "global")
    if video == "gone0000000":
        return _error(
            404,
            "videoNotFound",
            "The video identified by the videoId parameter could not be found.",
            "youtube.commentThread",
        )
    page = PAGES[request.query_params.get("pageToken")]
    return json_response(_listing("youtube#commentThreadListResponse", page))


async def comments(request: Request) -> Response:
    if (failure := _key_error(request)) is not None:
        return failure
    if request.query_params["parentId"] != T2["id"]:
        return _error(
            404,
            "parentCommentNotFound",
            "The parent comment could not be found.",
            "youtube.comment",
        )
    page = REPLY_PAGES[request.query_params.get("pageToken")]
    return json_response(_listing("youtube#commentListResponse", page))


APP = Starlette(
    routes=[
        Route("/youtube/v3/videos", videos),
        Route("/youtube/v3/commentThreads", comment_threads),
        Route("/youtube/v3/comments", comments),
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


def _adapter(
    http: httpx.AsyncClient, server: FixtureServer, key: str | None = KEY
) -> YouTube:
    return YouTube(http, f"{server.base_url}/youtube/v3", key)


async def _export(
    adapter: YouTube, video: str = VIDEO, **options: Any
) -> list[Comment]:
    return [c async for c in adapter.comments(video, ExportOptions(**options))]


def _ts(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


ALL_IDS = [
    "UgzT1aaaa",
    "UgzT1aaaa.R1",
    "UgzT1aaaa.R2",
    "UgzT2bbbb",
    *[f"UgzT2bbbb.R{n}" for n in range(1, 7)],
    "UgzT3cccc",
    "UgzT4dddd",
]


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("https://www.youtube.com/watch?v=M7lc1UVf-VE", VIDEO),
        ("https://youtube.com/watch?feature=share&v=M7lc1UVf-VE&t=42", VIDEO),
        ("https://m.youtube.com/watch?v=M7lc1UVf-VE#comments", VIDEO),
        ("https://youtu.be/M7lc1UVf-VE?si=abc", VIDEO),
        ("https://www.youtube.com/shorts/M7lc1UVf-VE", VIDEO),
        ("youtube.com/shorts/M7lc1UVf-VE/", VIDEO),
    ],
)
def test_parse_accepts_video_urls(url: str, ref: str) -> None:
    assert YouTube.parse(url) == ref


@pytest.mark.parametrize(
    "url",
    [
        "https://www.youtube.com/watch?v=short",
        "https://www.youtube.com/watch?list=PL123",
        "https://www.youtube.com/@channel",
        "https://youtu.be/",
        "https://notyoutube.com/watch?v=M7lc1UVf-VE",
        "https://www.youtube.com.evil.example/watch?v=M7lc1UVf-VE",
        "https://vimeo.com/76979871",
    ],
)
def test_parse_rejects_other_urls(url: str) -> None:
    assert YouTube.parse(url) is None


async def test_every_page_and_reply_is_exported_in_thread_order(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(_adapter(http, server))
    assert [c.id for c in exported] == ALL_IDS


async def test_thread_pages_are_requested_in_order(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(_adapter(http, server))
    tokens = [
        s.params.get("pageToken") for s in server.to("/youtube/v3/commentThreads")
    ]
    assert tokens == [None, "QURTSl9pMk", "QURTSl9pMl"]


async def test_requests_use_the_documented_parameters(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(_adapter(http, server))
    first = server.to("/youtube/v3/commentThreads")[0].params
    assert first == {
        "part": "snippet,replies",
        "videoId": VIDEO,
        "maxResults": "100",
        "order": "time",
        "textFormat": "html",
        "key": KEY,
    }
    assert server.to("/youtube/v3/videos")[0].params == {
        "part": "statistics",
        "id": VIDEO,
        "key": KEY,
    }


async def test_total_is_the_video_comment_count(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    adapter = _adapter(http, server)
    stream = adapter.comments(VIDEO, ExportOptions())
    await anext(stream)
    await stream.aclose()
    assert adapter.total == 12


async def test_top_level_comment_values(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(_adapter(http, server))
    assert exported[0] == Comment(
        id="UgzT1aaaa",
        parent_id=VIDEO,
        depth=0,
        author="@anna",
        published_at=datetime(2024, 3, 5, 10, 0, tzinfo=UTC),
        text="Great video & thanks!\nGrüße aus Köln, 日本語 👋 \"quoted\" 'x'",
        permalink="https://www.youtube.com/watch?v=M7lc1UVf-VE&lc=UgzT1aaaa",
        likes=12,
        replies=2,
    )


async def test_reply_values(http: httpx.AsyncClient, server: FixtureServer) -> None:
    exported = await _export(_adapter(http, server))
    assert exported[1] == Comment(
        id="UgzT1aaaa.R1",
        parent_id="UgzT1aaaa",
        depth=1,
        author="@bob",
        published_at=datetime(2024, 3, 5, 11, 0, tzinfo=UTC),
        text="@anna agreed",
        permalink="https://www.youtube.com/watch?v=M7lc1UVf-VE&lc=UgzT1aaaa.R1",
        likes=1,
        replies=0,
    )


async def test_inlined_replies_are_used_when_complete(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(_adapter(http, server))
    parents = [s.params["parentId"] for s in server.to("/youtube/v3/comments")]
    assert parents == ["UgzT2bbbb", "UgzT2bbbb"]


async def test_reply_list_is_paged_when_more_replies_exist_than_inlined(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(_adapter(http, server))
    tokens = [s.params.get("pageToken") for s in server.to("/youtube/v3/comments")]
    assert tokens == [None, "Z2V0X25leHQ"]


async def test_replies_come_oldest_first_under_their_comment(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(_adapter(http, server))
    replies = [(c.id, c.parent_id, c.depth) for c in exported[4:10]]
    assert replies == [(f"UgzT2bbbb.R{n}", "UgzT2bbbb", 1) for n in range(1, 7)]


async def test_replies_false_keeps_top_level_without_fetching_replies(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(_adapter(http, server), replies=False)
    assert [c.id for c in exported] == [
        "UgzT1aaaa",
        "UgzT2bbbb",
        "UgzT3cccc",
        "UgzT4dddd",
    ]
    assert server.to("/youtube/v3/comments") == []


async def test_limit_stops_before_further_requests(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(_adapter(http, server), limit=3)
    assert [c.id for c in exported] == ALL_IDS[:3]
    assert server.paths() == ["/youtube/v3/videos", "/youtube/v3/commentThreads"]


async def test_min_timestamp_keeps_newer_comments(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(
        _adapter(http, server), min_timestamp=_ts("2024-03-04T14:00:00+00:00")
    )
    assert [c.id for c in exported] == [
        "UgzT1aaaa",
        "UgzT1aaaa.R1",
        "UgzT1aaaa.R2",
        "UgzT2bbbb.R4",
        "UgzT2bbbb.R5",
        "UgzT2bbbb.R6",
    ]


async def test_min_timestamp_without_replies_stops_at_an_all_older_page(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(
        _adapter(http, server),
        replies=False,
        min_timestamp=_ts("2024-03-04T09:00:00+00:00"),
    )
    assert [c.id for c in exported] == ["UgzT1aaaa", "UgzT2bbbb"]
    tokens = [
        s.params.get("pageToken") for s in server.to("/youtube/v3/commentThreads")
    ]
    assert tokens == [None, "QURTSl9pMk"]


async def test_max_timestamp_skips_replies_of_later_comments(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(
        _adapter(http, server), max_timestamp=_ts("2024-03-03T00:00:00+00:00")
    )
    assert [c.id for c in exported] == ["UgzT3cccc", "UgzT4dddd"]
    assert server.to("/youtube/v3/comments") == []


async def test_unknown_video_is_not_found(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server), "notFound000")
    assert (
        raised.value.reason == "YouTube video notFound000 does not exist or is private"
    )


async def test_video_not_found_from_comment_threads(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server), "gone0000000")
    assert raised.value.reason == "YouTube video does not exist or was removed"


async def test_disabled_comments_are_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server), "disabled000")
    assert raised.value.reason == "comments are disabled for this YouTube video"


async def test_private_video_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server), "private0000")
    assert raised.value.reason == (
        "YouTube refused access to this video's comments: "
        "The request is not authorized."
    )


async def test_quota_exceeded_is_transient_until_quota_reset(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(_adapter(http, server), "quota000000")
    assert raised.value.reason == "YouTube API daily quota exceeded"
    assert raised.value.retry_after is not None
    assert 0 < raised.value.retry_after <= 25 * 3600


async def test_http_429_is_transient_with_retry_after(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(_adapter(http, server), "ratelimit00")
    assert raised.value.reason == "YouTube rate limit reached (HTTP 429)"
    assert raised.value.retry_after == 30.0


async def test_server_error_is_transient(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(_adapter(http, server), "servererr00")
    assert raised.value.reason == "YouTube answered HTTP 503"


async def test_invalid_key_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server, key="wrong"))
    assert raised.value.reason == "YouTube API key is invalid"


async def test_invalid_key_in_the_newer_error_format_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server, key="expired-key"))
    assert raised.value.reason == "YouTube API key is invalid"


async def test_missing_key_is_refused_without_a_request(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(_adapter(http, server, key=None))
    assert raised.value.reason == (
        "no YouTube API key is configured (EXPORTHUB_YOUTUBE_API_KEY)"
    )
    assert server.requests == []


async def test_unreachable_api_is_transient(http: httpx.AsyncClient) -> None:
    with pytest.raises(TransientSourceError):
        await _export(YouTube(http, "http://127.0.0.1:9/youtube/v3", KEY))
