"""HTTP helpers shared by the adapters: one place that maps transport and
status failures to :class:`SourceError` kinds."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from exporthub.sources.base import PermanentSourceError, TransientSourceError

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds, if any."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


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
    try:
        response = await http.get(url, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise TransientSourceError(f"{platform} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise TransientSourceError(f"{platform} could not be reached: {exc}") from exc
    if response.status_code in TRANSIENT_STATUSES:
        reason = (
            f"{platform} rate limit reached (HTTP 429)"
            if response.status_code == 429
            else f"{platform} answered HTTP {response.status_code}"
        )
        raise TransientSourceError(reason, retry_after=retry_after(response))
    if response.status_code == 404:
        raise PermanentSourceError(f"{platform} says this item does not exist")
    if response.status_code >= 400:
        raise PermanentSourceError(
            f"{platform} refused the request (HTTP {response.status_code})"
        )
    try:
        return orjson.loads(response.content), response
    except orjson.JSONDecodeError as exc:
        raise PermanentSourceError(
            f"{platform} answered with something not JSON"
        ) from exc
