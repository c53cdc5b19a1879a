"""The exporthub application: API, channel server and, optionally, a worker
in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from exporthub import __version__
from exporthub.api.http import HTTPError, JSONResponse, error_response
from exporthub.api.metrics import make_registry, metrics
from exporthub.api.routes import routes as user_routes
from exporthub.api.webhook_routes import routes as webhook_routes
from exporthub.batching import Coalescer
from exporthub.config import Settings
from exporthub.exports.constants import JOB_NAMESPACE, Channel, channel_namespace
from exporthub.exports.downloads import Downloads
from exporthub.exports.errors import DomainError
from exporthub.exports.events import JobEvents
from exporthub.exports.housekeeping import Housekeeper
from exporthub.exports.service import ExportService
from exporthub.exports.worker import Worker
from exporthub.realtime import (
    ChannelOptions,
    HistoryOptions,
    Node,
    NodeConfig,
    WebSocketEndpoint,
)
from exporthub.realtime.broker import Broker
from exporthub.realtime.server_api import ServerAPI
from exporthub.realtime.session import Session
from exporthub.store import Database
from exporthub.web.routes import routes as web_routes
from exporthub.webhooks import Dispatcher

logger = logging.getLogger(__name__)

WEBSOCKET_PATH = "/connection/websocket"
SERVER_API_PREFIX = "/api/"
"""The server API answers ``POST /api/{method}``: one segment after this."""
NAMESPACES = (
    "exports",
    "webhooks",
    "user",
    "user_notifications_channel",
    "user_dashboard_channel",
    "export.*",
)
HISTORY_NAMES = {JOB_NAMESPACE: "job"}
"""Names in ``EXPORTHUB_HISTORY_<NAME>`` that are not the namespace itself."""


def make_broker(settings: Settings) -> Broker | None:
    """The broker named by ``EXPORTHUB_BROKER``; None means in-memory."""
    if settings.broker_url.startswith("memory"):
        return None
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        from exporthub.realtime.broker.redis import RedisBroker

        return RedisBroker(settings.broker_url, prefix=settings.broker_prefix)
    raise SystemExit(
        f"EXPORTHUB_BROKER={settings.broker_url!r}: use memory:// or redis://HOST:PORT"
    )


def node_config(settings: Settings) -> NodeConfig:
    return NodeConfig(
        version=f"exporthub {__version__}",
        ping_interval=settings.ping_interval,
        pong_timeout=settings.pong_timeout,
        max_frame_bytes=settings.max_frame_bytes,
        max_queue_bytes=settings.max_queue_bytes,
        stale_delay=settings.stale_delay,
        namespaces={
            name: ChannelOptions(history=history)
            for name, history in namespace_history(settings).items()
        },
        namespace_of=channel_namespace,
    )


def namespace_history(settings: Settings) -> dict[str, HistoryOptions]:
    """The history of each channel namespace: ``EXPORTHUB_HISTORY_SIZE`` and
    ``_TTL``, unless ``EXPORTHUB_HISTORY_<NAME>`` says otherwise."""
    names = {HISTORY_NAMES.get(ns, ns): ns for ns in NAMESPACES}
    unknown = sorted(set(settings.history_overrides) - set(names))
    if unknown:
        raise SystemExit(
            f"EXPORTHUB_HISTORY_{unknown[0].upper()}: no such channel namespace; "
            f"the names are {', '.join(n.upper() for n in names)}"
        )
    default = (settings.history_size, settings.history_ttl)
    return {
        ns: HistoryOptions(*settings.history_overrides.get(name, default))
        for name, ns in names.items()
    }


SNAPSHOT_LINGER = 0.05
"""Seconds a dashboard snapshot batch waits for company when it directly
follows another (see :class:`~exporthub.batching.Coalescer`): the delay a
snapshot can get during a storm of connections, in exchange for fewer,
larger batches of queries."""


def create_app(
    settings: Settings | None = None, *, run_worker: bool = True
) -> Starlette:
    """Build the application.

    Args:
        settings: configuration; read from the environment when None.
        run_worker: also run a job worker inside this process.
    """
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)

    async def can_subscribe(user_uuid: str, channel: str) -> bool:
        return await service.owns_channel(user_uuid, channel)

    async def on_connect(session: Session) -> None:
        # A dashboard shows the whole picture as soon as it connects.
        channel = Channel.DASHBOARD.format(uuid=session.user)
        if channel not in session.subscriptions:
            return
        # Connections arriving together share the queries; a snapshot
        # overtaken by an update while it loaded is loaded again. Nothing
        # waits for it: the connect command is done.
        session.send_snapshot(
            channel, lambda reply: snapshots.call(session.user, reply)
        )

    node = Node(
        node_config(settings),
        settings.ensure_token_secret(),
        broker=make_broker(settings),
        can_subscribe=can_subscribe,
        on_connect=on_connect,
    )
    events = JobEvents(node.publish, settings.public_url, db)
    snapshots: Coalescer[str, bytes] = Coalescer(
        events.snapshots_by_uuid, linger=SNAPSHOT_LINGER
    )
    dispatcher = Dispatcher(db, settings.webhooks, report=events.webhook_attempt)
    events.sinks.append(dispatcher.sink)
    downloads = Downloads(db, settings, events)
    housekeeper = Housekeeper(
        db,
        events,
        node.publish,
        interval=settings.outbox_interval,
        plan_interval=settings.plan_check_interval,
    )
    worker = Worker(db, settings, events) if run_worker else None
    service = ExportService(
        db,
        settings,
        events,
        wake=worker.wake if worker else _nothing,
        cancel=worker.cancel if worker else _nothing,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.create()
        await node.start()
        worker_task = asyncio.ensure_future(worker.run()) if worker else None
        housekeeping = asyncio.ensure_future(housekeeper.run())
        dispatcher_task = asyncio.ensure_future(dispatcher.run())
        _settle_garbage_collector()
        logger.info("exporthub %s serving (data in %s)", __version__, settings.data_dir)
        try:
            yield
        finally:
            housekeeping.cancel()
            await downloads.close()
            if worker is not None and worker_task is not None:
                await worker.stop(settings.shutdown_grace)
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            await dispatcher.stop()
            await dispatcher_task
            await node.shutdown()
            await db.close()

    server_api = ServerAPI(
        node, settings.api_key, max_body_bytes=settings.max_body_bytes
    )
    endpoint = WebSocketEndpoint(node)
    app = Starlette(
        routes=[
            *user_routes,
            *webhook_routes,
            *server_api.routes,
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            WebSocketRoute(WEBSOCKET_PATH, endpoint),
            *web_routes,
        ],
        exception_handlers={
            HTTPError: _http_error,
            DomainError: _domain_error,
            HTTPException: _starlette_error,
            Exception: _crash,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.node = node
    app.state.service = service
    app.state.downloads = downloads
    app.state.metrics_registry, app.state.metrics_collector = make_registry(
        node, dispatcher.attempts
    )
    app.state.events = events
    app.state.worker = worker
    app.state.dispatcher = dispatcher
    app.state.websocket_endpoint = endpoint
    app.state.websocket_path = WEBSOCKET_PATH
    app.state.server_api = server_api
    return app


def create_server_app(
    settings: Settings | None = None, *, run_worker: bool = True
) -> FrontDoor:
    """The application as ``exporthub serve`` runs it: :func:`create_app`
    behind a :class:`FrontDoor`."""
    app = create_app(settings, run_worker=run_worker)
    server_api = app.state.server_api if app.state.settings.api_key else None
    return FrontDoor(app, server_api)


# Each connection holds some 150 tracked objects, so with thousands of
# clients the default thresholds run full collections every few
# publications; measured, they took half the CPU of a 10k fan-out.
GC_THRESHOLDS = (50_000, 20, 100)


def _settle_garbage_collector() -> None:
    """Move what startup allocated out of the collector's way and collect
    less often (see ``bench/results/exporthub-profile.md``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class FrontDoor:
    """ASGI front of ``exporthub serve``: a server API call (``POST
    /api/{method}``, the publishers' path) goes straight to the server API,
    everything else to the application. Starlette's routing through every
    route and its exception wrappers were a sixth of the CPU of serving
    publications. (WebSockets never get here: ``exporthub serve`` serves
    them with :mod:`exporthub.realtime.direct`.)
    """

    def __init__(self, app: Starlette, server_api: ServerAPI | None) -> None:
        self.app = app
        self.state = app.state
        self._server_api = server_api

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._server_api is not None and scope["type"] == "http":
            path = scope["path"]
            if (
                scope["method"] == "POST"
                and path.startswith(SERVER_API_PREFIX)
                and "/" not in path[len(SERVER_API_PREFIX) :]
            ):
                await self._server_api.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nothing(*_args: Any) -> None:
    return None


async def health(request: Request) -> Response:
    """200 when the database and the broker answer, 503 otherwise."""
    checks: dict[str, str] = {}
    healthy = True
    for name, probe in (
        ("database", request.app.state.db.ping),
        ("broker", request.app.state.node.broker.ping),
    ):
        try:
            await asyncio.wait_for(probe(), 2.0)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"
            healthy = False
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error_response(exc.status, exc.code, exc.message)


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return error_response(exc.status, exc.code, exc.message)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )


async def _crash(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")
