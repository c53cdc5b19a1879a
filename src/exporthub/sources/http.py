"""HTTP helpers shared by the adapters: one place that maps transport and
status failures to :class:`SourceError` kinds.

:func:`get_json` is the one-call form. Adapters that need a platform's own
error body to word a precise reason use the pieces it is made of:
:func:`send`, then their own checks, then :func:`raise_for_status` and
:func:`decode_json`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from exporthub.sources.base import PermanentSourceError, TransientSourceError

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """True when both URLs share scheme, host and port."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


async def send(
    http: httpx.AsyncClient,
    url: str,
    *,
    platform: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GET ``url`` and return the response whatever its status.

    Redirects are followed only while they stay on the same origin: a
    platform's answer must never steer the worker to another host, so a
    redirect elsewhere is returned as is for :func:`raise_for_status`.

    Raises:
        TransientSourceError: timeout or connection failure.
    """
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = await http.get(
                url, params=params, headers=headers, follow_redirects=False
            )
        except httpx.TimeoutException as exc:
            raise TransientSourceError(f"{platform} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise TransientSourceError(
                f"{platform} could not be reached: {exc}"
            ) from exc
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        target = response.url.join(location)
        if not same_origin(target, response.url):
            return response
        # The location carries its own query string.
        url, params = str(target), None
    return response


def raise_for_status(
    response: httpx.Response, platform: str, *, wait: float | None = None
) -> None:
    """Raise the :class:`SourceError` a non-2xx ``response`` stands for.

    ``wait`` is the retry delay to report when the response has no
    ``Retry-After`` header (platforms announce resets in their own headers).

    Raises:
        TransientSourceError: 429 or 5xx (and 408, 425).
        PermanentSourceError: any other status outside 2xx.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in TRANSIENT_STATUSES:
        reason = (
            f"{platform} rate limit reached (HTTP 429)"
            if status == 429
            else f"{platform} answered HTTP {status}"
        )
        delay = retry_after(response)
        raise TransientSourceError(reason, retry_after=wait if delay is None else delay)
    if status == 404:
        raise PermanentSourceError(f"{platform} says this item does not exist")
    if status in REDIRECT_STATUSES:
        raise PermanentSourceError(
            f"{platform} redirected the request elsewhere (HTTP {status})"
        )
    raise PermanentSourceError(f"{platform} refused the request (HTTP {status})")


def decode_json(response: httpx.Response, platform: str) -> Any:
    """The JSON body of ``response``.

    Raises:
        PermanentSourceError: the body is not JSON.
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise PermanentSourceError(
            f"{platform} answered with something not JSON"
        ) from exc


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an error response, or ``{}`` when there is none."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


async def get_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    platform: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Any, httpx.Response]:
    """GET ``url`` and decode its JSON body.

    Raises:
        TransientSourceError: timeout, connection failure, 429 or 5xx.
        PermanentSourceError: any other non-2xx answer, or a body that is
            not JSON. 404 is left to the caller through the response when
            it wants a more precise message, so it is raised here too with a
            generic reason.
    """
    response = await send(http, url, platform=platform, params=params, headers=headers)
    raise_for_status(response, platform)
    return decode_json(response, platform), response
