"""One delivery attempt on the wire.

Within one deadline: parse and resolve the endpoint, check every address,
sign the body with a fresh timestamp, POST it to the checked address (the
URL's host name still goes out as ``Host`` and as the TLS server name, so
certificates are verified against it), and read at most a few KiB of the
answer. Redirects are not followed; proxies from the environment are not
used, since they would connect somewhere the guard never checked.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import httpx

from exporthub.config import WebhookSettings
from exporthub.netguard import EndpointError, parse_endpoint, resolve
from exporthub.webhooks.constants import (
    ERROR_CHARS,
    MAX_IN_FLIGHT,
    RESPONSE_EXCERPT_CHARS,
    RESPONSE_READ_LIMIT,
    USER_AGENT,
    Header,
)
from exporthub.webhooks.signing import signature_headers

SUCCESS = range(200, 300)
REDIRECTS = range(300, 400)
MILLISECONDS = 1000.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: a status code, or the error that stopped it."""

    status_code: int | None
    error: str | None
    duration_ms: float | None
    response: str | None = None

    @property
    def success(self) -> bool:
        return self.error is None and self.status_code in SUCCESS


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery's request: where to, what, and with which secret."""

    url: str
    secret: str
    body: bytes
    delivery: str
    event: str
    attempt: int


def new_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The HTTP client deliveries share; ``verify`` is its trust store (the
    default one unless given).

    Every request opens its own connection: requests go to IP addresses, and
    a pooled connection verified for one host name must not carry a request
    for another name that happens to share the address.
    """
    return httpx.AsyncClient(
        verify=verify,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=0),
    )


async def attempt(
    client: httpx.AsyncClient, message: Message, settings: WebhookSettings
) -> Outcome:
    """Send ``message`` once, within ``settings.timeout`` seconds, to an
    address inside ``settings.allowed_networks`` or the public internet.
    Never raises for what the endpoint does."""
    started = time.monotonic()
    timeout = settings.timeout

    def elapsed() -> float:
        return round((time.monotonic() - started) * MILLISECONDS, 1)

    try:
        async with asyncio.timeout(timeout):
            status, excerpt = await _post(client, message, settings)
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(None, f"timed out after {timeout:g}s", elapsed())
    except EndpointError as exc:
        return Outcome(None, _short(str(exc)), elapsed())
    except (httpx.HTTPError, OSError) as exc:
        return Outcome(None, _short(_describe(exc)), elapsed())
    error = None
    if status not in SUCCESS:
        error = f"answered {status}"
        if status in REDIRECTS:
            error += "; redirects are not followed"
    return Outcome(status, error, elapsed(), excerpt)


async def _post(
    client: httpx.AsyncClient, message: Message, settings: WebhookSettings
) -> tuple[int, str]:
    endpoint = parse_endpoint(message.url)
    addresses = await resolve(endpoint, settings.allowed_networks)
    headers = {
        "Host": endpoint.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # Compressed answers could expand far beyond the read limit.
        "Accept-Encoding": "identity",
        Header.DELIVERY: message.delivery,
        Header.EVENT: message.event,
        Header.ATTEMPT: str(message.attempt),
        **signature_headers(message.secret, int(time.time()), message.body),
    }
    extensions = {}
    if endpoint.is_https:
        extensions["sni_hostname"] = endpoint.host
    request = client.build_request(
        "POST",
        endpoint.pinned_url(addresses[0]),
        content=message.body,
        headers=headers,
        timeout=httpx.Timeout(settings.timeout),
        extensions=extensions,
    )
    response = await client.send(request, stream=True)
    try:
        head = bytearray()
        async for chunk in response.aiter_raw():
            head += chunk
            if len(head) >= RESPONSE_READ_LIMIT:
                break
    finally:
        await response.aclose()
    excerpt = bytes(head[:RESPONSE_READ_LIMIT]).decode("utf-8", errors="replace")
    return response.status_code, excerpt[:RESPONSE_EXCERPT_CHARS]


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {text}"
    return f"{type(exc).__name__}: {text}"


def _short(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"
