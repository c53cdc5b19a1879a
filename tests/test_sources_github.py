"""GitHub adapter against a local stand-in for the REST API."""

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
from exporthub.sources.github import API_VERSION, GitHub
from fixture_servers import FixtureServer, json_response, serve

OWNER, REPO, NUMBER = "octo-org", "hello-world", 42
REF = f"{OWNER}/{REPO}#{NUMBER}"
REPO_ID = 1296269
NOT_FOUND = {
    "message": "Not Found",
    "documentation_url": "https://docs.github.com/rest/issues/issues#get-an-issue",
    "status": "404",
}


def _user(login: str) -> dict[str, Any]:
    return {
        "login": login,
        "id": sum(map(ord, login)),
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{len(login)}?v=4",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def _reactions(cid: int, plus: int, heart: int) -> dict[str, Any]:
    return {
        "url": f"https://api.github.com/repos/{OWNER}/{REPO}/issues/comments/{cid}/reactions",
        "total_count": plus + heart,
        "+1": plus,
        "-1": 0,
        "laugh": 0,
        "hooray": 0,
        "confused": 0,
        "heart": heart,
        "rocket": 0,
        "eyes": 0,
    }


def _comment(
    cid: int, login: str, body: str, created: str, updated: str | None = None
) -> dict[str, Any]:
    return {
        "url": f"https://api.github.com/repos/{OWNER}/{REPO}/issues/comments/{cid}",
        "html_url": f"https://github.com/{OWNER}/{REPO}/issues/{NUMBER}#issuecomment-{cid}",
        "issue_url": f"https://api.github.com/repos/{OWNER}/{REPO}/issues/{NUMBER}",
        "id": cid,
        "node_id": f"IC_kwDO{cid}",
        "user": _user(login),
        "created_at": created,
        "updated_at": updated or created,
        "author_association": "CONTRIBUTOR",
        "body": body,
        "reactions": _reactions(cid, cid % 3, 1),
        "performed_via_github_app": None,
    }


COMMENTS = [
    _comment(
        1001,
        "octocat",
        "First line\r\n\r\nSecond &amp; <b>raw</b> Grüße 日本語 🚀\r\n",
        "2024-02-01T09:00:00Z",
    ),
    _comment(1002, "hubot", "```py\nprint('hi')\n```", "2024-02-01T10:00:00Z"),
    # The author deleted their account: GitHub shows the ghost user.
    _comment(
        1003,
        "ghost",
        "old",
        "2024-02-02T08:00:00Z",
        updated="2024-02-10T08:00:00Z",
    ),
    _comment(1004, "monalisa", "- [x] done\n- [ ] todo", "2024-02-03T08:00:00Z"),
    _comment(1005, "octocat", "Closing.", "2024-02-04T08:00:00Z"),
]
PAGE_SIZE = 3
ISSUE = {
    "url": f"https://api.github.com/repos/{OWNER}/{REPO}/issues/{NUMBER}",
    "html_url": f"https://github.com/{OWNER}/{REPO}/issues/{NUMBER}",
    "id": 2100000042,
    "number": NUMBER,
    "title": "Export looks wrong",
    "state": "open",
    "user": _user("octocat"),
    "comments": 5,
    "created_at": "2024-01-31T12:00:00Z",
    "updated_at": "2024-02-04T08:00:00Z",
    "body": "Steps to reproduce",
}


def _rate_limited(headers: dict[str, str]) -> Response:
    return json_response(
        {
            "message": "API rate limit exceeded for 127.0.0.1.",
            "documentation_url": "https://docs.github.com/rest/rate-limit",
        },
        403,
        headers,
    )


def _refusal(request: Request) -> Response | None:
    repo = request.path_params.get("repo")
    if request.headers.get("authorization") == "Bearer bad-token":
        return json_response(
            {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            },
            401,
        )
    if repo == "limited":
        return _rate_limited(
            {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(time.time()) + 600),
                "x-ratelimit-used": "60",
                "x-ratelimit-resource": "core",
            }
        )
    if repo == "secondary":
        return _rate_limited({"retry-after": "60", "x-ratelimit-remaining": "4000"})
    if repo == "disabled":
        return json_response(
            {
                "message": "Issues are disabled for this repo",
                "documentation_url": "https://docs.github.com/v3/issues/",
                "status": "410",
            },
            410,
        )
    if repo == "flaky":
        return json_response({"message": "Server Error"}, 502)
    if repo == "renamed":
        owner = request.path_params["owner"]
        moved = request.url.path.replace(
            f"/repos/{owner}/{repo}", f"/repositories/{REPO_ID}"
        )
        query = f"?{request.url.query}" if request.url.query else ""
        return json_response(
            {"message": "Moved Permanently", "url": f"{moved}{query}"},
            301,
            {"location": f"{moved}{query}"},
        )
    if repo == "moved-away":
        return json_response(
            {"message": "Moved Permanently"},
            301,
            {"location": f"https://elsewhere.example/repos/x/y/issues/{NUMBER}"},
        )
    if repo not in (REPO, None) or request.path_params.get("number") != NUMBER:
        return json_response(NOT_FOUND, 404)
    return None


async def issue(request: Request) -> Response:
    return _refusal(request) or json_response(ISSUE)


async def comments(request: Request) -> Response:
    if (refusal := _refusal(request)) is not None:
        return refusal
    since = request.query_params.get("since")
    kept = [c for c in COMMENTS if since is None or c["updated_at"] >= since]
    page = int(request.query_params.get("page", "1"))
    chunk = kept[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    # GitHub's links name the repository by id and carry every parameter.
    base = f"{request.base_url}repositories/{REPO_ID}/issues/{NUMBER}/comments"
    extra = f"&since={since}" if since else ""
    links = []
    if page * PAGE_SIZE < len(kept):
        links.append(f'<{base}?per_page=100{extra}&page={page + 1}>; rel="next"')
    if page > 1:
        links.append(f'<{base}?per_page=100{extra}&page={page - 1}>; rel="prev"')
    headers = {"link": ", ".join(links)} if links else None
    return json_response(chunk, headers=headers)


async def hostile_comments(request: Request) -> Response:
    return json_response(
        COMMENTS[:1],
        headers={"link": '<https://elsewhere.example/comments?page=2>; rel="next"'},
    )


APP = Starlette(
    routes=[
        Route("/repos/{owner}/{repo}/issues/{number:int}", issue),
        Route("/repos/hostile/{repo}/issues/{number:int}/comments", hostile_comments),
        Route("/repos/{owner}/{repo}/issues/{number:int}/comments", comments),
        Route(f"/repositories/{REPO_ID}/issues/{{number:int}}", issue),
        Route(f"/repositories/{REPO_ID}/issues/{{number:int}}/comments", comments),
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
    http: httpx.AsyncClient,
    server: FixtureServer,
    ref: str = REF,
    token: str | None = None,
    **options: Any,
) -> list[Comment]:
    adapter = GitHub(http, server.base_url, token)
    return [c async for c in adapter.comments(ref, ExportOptions(**options))]


def _ids(comments: list[Comment]) -> list[str]:
    return [c.id for c in comments]


def _ts(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("https://github.com/octo-org/hello-world/issues/42", REF),
        ("https://www.github.com/octo-org/hello-world/issues/42#issuecomment-1", REF),
        ("github.com/octo-org/hello-world/pull/42/files", REF),
        ("https://github.com/octo-org/hello-world/pull/42?diff=split", REF),
        ("https://github.com/a/b.c_d-e/issues/7", "a/b.c_d-e#7"),
    ],
)
def test_parse_accepts_issue_and_pull_urls(url: str, ref: str) -> None:
    assert GitHub.parse(url) == ref


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/octo-org/hello-world",
        "https://github.com/octo-org/hello-world/issues",
        "https://github.com/octo-org/hello-world/discussions/3",
        "https://github.com/octo-org/../issues/1",
        "https://gist.github.com/octo-org/hello-world/issues/1",
        "https://github.com.evil.example/octo-org/hello-world/issues/1",
    ],
)
def test_parse_rejects_other_urls(url: str) -> None:
    assert GitHub.parse(url) is None


async def test_every_page_is_exported_in_order(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert _ids(exported) == ["1001", "1002", "1003", "1004", "1005"]


async def test_pages_follow_the_link_header(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server)
    assert [(s.path, s.params) for s in server.requests] == [
        (f"/repos/{OWNER}/{REPO}/issues/{NUMBER}", {}),
        (f"/repos/{OWNER}/{REPO}/issues/{NUMBER}/comments", {"per_page": "100"}),
        (
            f"/repositories/{REPO_ID}/issues/{NUMBER}/comments",
            {"per_page": "100", "page": "2"},
        ),
    ]


async def test_requests_ask_for_the_versioned_json_api(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server, limit=1)
    headers = server.requests[0].headers
    assert (headers["accept"], headers["x-github-api-version"]) == (
        "application/vnd.github+json",
        API_VERSION,
    )
    assert "authorization" not in headers


async def test_token_is_sent_as_bearer(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server, token="good-token", limit=1)
    assert server.requests[0].headers["authorization"] == "Bearer good-token"


async def test_comment_values(http: httpx.AsyncClient, server: FixtureServer) -> None:
    exported = await _export(http, server)
    assert exported[0] == Comment(
        id="1001",
        parent_id=REF,
        depth=0,
        author="octocat",
        published_at=datetime(2024, 2, 1, 9, 0, tzinfo=UTC),
        text="First line\n\nSecond &amp; <b>raw</b> Grüße 日本語 🚀",
        permalink=f"https://github.com/{OWNER}/{REPO}/issues/{NUMBER}#issuecomment-1001",
        likes=3,
        replies=None,
    )


async def test_markdown_is_kept_as_written(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server)
    assert exported[1].text == "```py\nprint('hi')\n```"


async def test_total_is_the_issue_comment_count(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    adapter = GitHub(http, server.base_url)
    stream = adapter.comments(REF, ExportOptions())
    await anext(stream)
    await stream.aclose()
    assert adapter.total == 5


async def test_limit_stops_before_the_next_page(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, limit=2)
    assert _ids(exported) == ["1001", "1002"]
    assert len(server.requests) == 2


async def test_min_timestamp_is_sent_as_since(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    await _export(http, server, min_timestamp=_ts("2024-02-02T08:00:00+00:00"))
    assert server.requests[1].params == {
        "per_page": "100",
        "since": "2024-02-02T08:00:00Z",
    }


async def test_min_timestamp_drops_comments_only_updated_since(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(
        http, server, min_timestamp=_ts("2024-02-02T09:00:00+00:00")
    )
    assert _ids(exported) == ["1004", "1005"]


async def test_max_timestamp_stops_paging_at_the_first_later_comment(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(
        http, server, max_timestamp=_ts("2024-02-01T12:00:00+00:00")
    )
    assert _ids(exported) == ["1001", "1002"]
    assert len(server.requests) == 2


async def test_same_site_redirect_is_followed(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    exported = await _export(http, server, f"{OWNER}/renamed#{NUMBER}", limit=1)
    assert _ids(exported) == ["1001"]


async def test_redirect_to_another_site_is_refused(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"{OWNER}/moved-away#{NUMBER}")
    assert raised.value.reason == ("GitHub redirected the request elsewhere (HTTP 301)")


async def test_next_page_on_another_site_is_refused(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"hostile/{REPO}#{NUMBER}")
    assert raised.value.reason == (
        "GitHub pointed the next page of comments at another site"
    )


async def test_unknown_issue_is_not_found_or_private(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"{OWNER}/nothing-here#1")
    assert raised.value.reason == (
        f"GitHub issue {OWNER}/nothing-here#1 does not exist "
        "or is in a private repository"
    )


async def test_disabled_issues_are_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, f"{OWNER}/disabled#{NUMBER}")
    assert raised.value.reason == (
        f"GitHub issue {OWNER}/disabled#{NUMBER} is gone: "
        "Issues are disabled for this repo"
    )


async def test_bad_token_is_permanent(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await _export(http, server, token="bad-token")
    assert raised.value.reason == "the GitHub token is invalid or expired"


async def test_exhausted_rate_limit_waits_for_the_reset(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, f"{OWNER}/limited#{NUMBER}")
    assert raised.value.reason == "GitHub rate limit reached"
    assert raised.value.retry_after is not None
    assert 500 < raised.value.retry_after <= 600


async def test_secondary_rate_limit_uses_retry_after(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, f"{OWNER}/secondary#{NUMBER}")
    assert raised.value.retry_after == 60.0


async def test_server_error_is_transient(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(TransientSourceError) as raised:
        await _export(http, server, f"{OWNER}/flaky#{NUMBER}")
    assert raised.value.reason == "GitHub answered HTTP 502"
