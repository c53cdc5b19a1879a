"""The shared HTTP helpers, against a local fixture server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporthub.sources.base import PermanentSourceError
from exporthub.sources.http import MAX_REDIRECTS, get_json, retry_after
from fixture_servers import FixtureServer, json_response, serve


async def loop(request: Request) -> Response:
    hop = int(request.path_params["hop"])
    return Response(status_code=302, headers={"location": f"/loop/{hop + 1}"})


async def hello(request: Request) -> Response:
    return json_response({"hello": "wörld"})


async def moved(request: Request) -> Response:
    return Response(status_code=307, headers={"location": "/hello?x=1"})


APP = Starlette(
    routes=[
        Route("/loop/{hop}", loop),
        Route("/hello", hello),
        Route("/moved", moved),
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


def test_retry_after_reads_seconds() -> None:
    response = httpx.Response(429, headers={"Retry-After": "12"})
    assert retry_after(response) == 12.0


def test_retry_after_reads_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(later)})
    wait = retry_after(response)
    assert wait is not None
    assert 3000 < wait <= 3600


def test_retry_after_ignores_garbage() -> None:
    response = httpx.Response(503, headers={"Retry-After": "soon"})
    assert retry_after(response) is None


async def test_same_origin_redirect_is_followed(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    body, _ = await get_json(http, f"{server.base_url}/moved", platform="Test")
    assert body == {"hello": "wörld"}
    assert server.requests[-1].params == {"x": "1"}


async def test_redirect_chain_is_cut_after_the_limit(
    http: httpx.AsyncClient, server: FixtureServer
) -> None:
    with pytest.raises(PermanentSourceError) as raised:
        await get_json(http, f"{server.base_url}/loop/0", platform="Test")
    assert raised.value.reason == ("Test redirected the request elsewhere (HTTP 302)")
    assert len(server.requests) == MAX_REDIRECTS + 1
