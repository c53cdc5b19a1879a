"""Webhook routes: register, list and delete endpoints, list their
deliveries with every attempt, and send a delivery again."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporthub.api.http import HTTPError, JSONResponse, current_user, read_object
from exporthub.api.routes import (
    _GUID,
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    _positive,
    path_id,
)
from exporthub.exports.constants import Event
from exporthub.exports.views import iso
from exporthub.netguard import AddressRefused, EndpointError, parse_endpoint
from exporthub.netguard import resolve as resolve_endpoint
from exporthub.webhooks import store
from exporthub.webhooks.constants import RESOLVE_TIMEOUT, DeliveryStatus

EVENT_NAMES = tuple(event.value for event in Event)
"""What an endpoint may subscribe to: every job event."""


class Code:
    """``error_code`` values of the webhook routes."""

    INVALID_URL = "invalid_url"
    ADDRESS_REFUSED = "address_refused"
    INVALID_EVENTS = "invalid_events"
    WEBHOOK_LIMIT = "webhook_limit"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"


async def create_webhook(request: Request) -> Response:
    """Register ``{"url", "events"?}``; the answer shows the signing secret,
    the only time it is shown."""
    user = await current_user(request)
    body = await read_object(request)
    events = _events(body.get("events"))
    url = await _checked_url(request, body.get("url"))
    try:
        webhook = await store.create_webhook(request.app.state.db, user.id, url, events)
    except store.WebhookLimit as exc:
        raise HTTPError(409, Code.WEBHOOK_LIMIT, str(exc)) from exc
    return JSONResponse({**_webhook(webhook), "secret": webhook.secret}, 201)


async def list_webhooks(request: Request) -> Response:
    user = await current_user(request)
    found = await store.list_webhooks(request.app.state.db, user.id)
    return JSONResponse({"data": [_webhook(w) for w in found]})


async def delete_webhook(request: Request) -> Response:
    user = await current_user(request)
    webhook_id = path_id(request)
    if not await store.delete_webhook(request.app.state.db, user.id, webhook_id):
        raise _not_found(webhook_id)
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    """The endpoint's deliveries, newest first, each with all its attempts."""
    webhook = await _own_webhook(request)
    page = _positive(request, "page", 1, None)
    per_page = _positive(request, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    found, total = await store.deliveries_page(
        request.app.state.db,
        webhook.id,
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    return JSONResponse(
        {
            "data": [_delivery(d, attempts) for d, attempts in found],
            "meta": {
                "page": page,
                "per_page": per_page,
                "total": total,
                "pages": (total + per_page - 1) // per_page,
            },
        }
    )


async def redeliver(request: Request) -> Response:
    """Send an ended delivery's payload again, as a new delivery."""
    webhook = await _own_webhook(request)
    guid = request.path_params["delivery"]
    created = None
    if _GUID.match(guid):
        try:
            created = await store.redeliver(request.app.state.db, webhook.id, guid)
        except store.StillPending as exc:
            raise HTTPError(409, Code.CONFLICT, str(exc)) from exc
    if created is None:
        raise HTTPError(404, Code.NOT_FOUND, f"no delivery {guid}")
    request.app.state.dispatcher.wake()
    return JSONResponse(_delivery(created, []), 202)


async def _own_webhook(request: Request) -> store.Webhook:
    user = await current_user(request)
    webhook_id = path_id(request)
    webhook = await store.get_webhook(request.app.state.db, user.id, webhook_id)
    if webhook is None:
        raise _not_found(webhook_id)
    return webhook


def _not_found(webhook_id: int) -> HTTPError:
    return HTTPError(404, Code.NOT_FOUND, f"no webhook {webhook_id}")


async def _checked_url(request: Request, raw: Any) -> str:
    """The URL, once its host resolves only to addresses webhooks may reach.

    Nothing is sent to the endpoint: it is resolved and checked, not called.
    """
    allowed = request.app.state.settings.webhooks.allowed_networks
    try:
        endpoint = parse_endpoint(raw)
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            await resolve_endpoint(endpoint, allowed)
    except AddressRefused as exc:
        raise HTTPError(422, Code.ADDRESS_REFUSED, str(exc)) from exc
    except EndpointError as exc:
        raise HTTPError(422, Code.INVALID_URL, str(exc)) from exc
    except TimeoutError as exc:
        raise HTTPError(
            422, Code.INVALID_URL, f"url's host did not resolve in {RESOLVE_TIMEOUT:g}s"
        ) from exc
    return str(endpoint.url)


def _events(raw: Any) -> list[str] | None:
    """The event filter: None for every event, else known names, deduplicated."""
    if raw is None:
        return None
    valid = ", ".join(EVENT_NAMES)
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        raise HTTPError(
            422,
            Code.INVALID_EVENTS,
            f"events must be a non-empty list of event names, or left out for "
            f"every event; valid events are {valid}",
        )
    unknown = [e for e in raw if e not in EVENT_NAMES]
    if unknown:
        raise HTTPError(
            422,
            Code.INVALID_EVENTS,
            f"unknown events: {', '.join(unknown)}; valid events are {valid}",
        )
    return list(dict.fromkeys(raw))


def _webhook(webhook: store.Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "created_at": iso(webhook.created_at),
    }


def _delivery(
    delivery: store.Delivery, attempts: list[store.Attempt]
) -> dict[str, Any]:
    pending = delivery.status is DeliveryStatus.PENDING
    return {
        "id": delivery.guid,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "job_guid": delivery.job_guid or None,
        "status": delivery.status.value,
        "redelivery_of": delivery.redelivery_of,
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if pending else None,
        "finished_at": iso(delivery.finished_at),
        "payload": orjson.loads(delivery.payload),
        "attempts": [
            {
                "attempt": a.attempt,
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
                "success": a.success,
                "retry_in": a.retry_in,
                "response": a.response,
                "attempted_at": iso(a.attempted_at),
            }
            for a in attempts
        ],
    }


routes = [
    Route("/api/v3/webhooks", create_webhook, methods=["POST"]),
    Route("/api/v3/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/v3/webhooks/{id:int}", delete_webhook, methods=["DELETE"]),
    Route("/api/v3/webhooks/{id:int}/deliveries", list_deliveries, methods=["GET"]),
    Route(
        "/api/v3/webhooks/{id:int}/deliveries/{delivery}/redeliver",
        redeliver,
        methods=["POST"],
    ),
]
