"""Centrifugo-compatible server API: ``POST /api/{method}`` with a JSON body.

Unmodified server API clients (``cent`` for Python, and the others) work
against it. A reply is ``{"result": {...}}`` or ``{"error": {"code",
"message"}}`` with HTTP 200; ``batch`` replies ``{"replies": [...]}``, one
``{"<method>": result}`` or ``{"error": ...}`` per command. HTTP statuses say
what is wrong with the request itself:

- 401: wrong or missing API key (``X-API-Key: <key>`` or
  ``Authorization: apikey <key>``);
- 404: unknown method; and every path when the API is off (no key);
- 405: an HTTP method other than POST;
- 413: a body over the size limit;
- 400: a body that is not a JSON object, or a field of the wrong type.

All but 405 and the 404 of an API that is off carry a JSON ``error`` body.

Where it differs from Centrifugo: ``data`` (or ``b64data``, which must decode
to JSON since clients speak JSON) is required to publish; ``tags`` are
checked but not delivered, the broker interface carrying data only;
``session`` never matches a connection, connections having no session id;
``recover_since`` and the positioning overrides of ``subscribe`` are ignored;
``channels`` patterns are shell-style (``fnmatch``); ``info`` describes this
node only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from fnmatch import fnmatchcase
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Receive, Scope, Send

from exporthub.realtime.broker import StreamPosition
from exporthub.realtime.codes import ApiError, Disconnect
from exporthub.realtime.node import ChannelOptions, Node
from exporthub.realtime.session import Session

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted; larger ones get HTTP 413."""
API_PATH = "/api/{method}"
AUTH_SCHEME = "apikey"
"""Scheme of ``Authorization: apikey <key>``."""
MIN_DISCONNECT_CODE = 3000
MAX_DISCONNECT_CODE = 4999
"""Custom disconnect codes must be WebSocket application codes."""


class BadParams(Exception):
    """A request field has the wrong type: HTTP 400 for a single method, a
    107 reply for one command of a batch."""


class ApiFailure(Exception):
    """Ends one method call with an API error reply."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class _BodyTooLarge(Exception):
    pass


MethodHandler = Callable[["ServerAPI", dict[str, Any]], Awaitable[dict[str, Any]]]


class ServerAPI:
    """The server API of one node, as an ASGI app or as Starlette routes.

    Mount it at the root of an application (``Mount("", app=api)``, after the
    app's own routes) or add ``api.routes`` to them; either serves
    ``POST /api/{method}``.

    Args:
        node: the node the API acts on.
        api_key: the key callers must send; None switches the API off, and
            then every path answers 404.
        max_body_bytes: largest request body accepted.
    """

    def __init__(
        self,
        node: Node,
        api_key: str | None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if api_key == "":
            raise ValueError("an empty API key would let anyone in; use None")
        self.node = node
        self._api_key = api_key.encode() if api_key is not None else None
        self._max_body_bytes = max_body_bytes
        routes: list[BaseRoute] = []
        if api_key is not None:
            routes.append(Route(API_PATH, self._endpoint, methods=["POST"]))
        self.routes: list[BaseRoute] = routes
        self._router = Router(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one method in-process; returns the reply body an HTTP caller
        would get (``{"result": ...}``, ``{"error": ...}`` or, for ``batch``,
        ``{"replies": [...]}``).

        Raises:
            BadParams: a field has the wrong type.
            KeyError: no such method.
        """
        if method == "batch":
            return await self._batch(params)
        return await self._single(_METHODS[method], params)

    # -- HTTP ------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request already known to be ``POST
        /api/{method}``, as plain ASGI: what an application's front calls
        for its publishers' path, past any routing (Starlette's requests,
        responses and exception wrappers cost more than a publish)."""
        method = scope["path"].rpartition("/")[2]
        api_key = authorization = length = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
        try:
            status, body = await self._respond(
                method, api_key, authorization, length, _asgi_body(receive)
            )
        except _Disconnected:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _endpoint(self, request: Request) -> Response:
        headers = request.headers
        status, body = await self._respond(
            request.path_params["method"],
            headers.get("x-api-key"),
            headers.get("authorization"),
            headers.get("content-length"),
            request.stream(),
        )
        return Response(body, status, media_type="application/json")

    async def _respond(
        self,
        method: str,
        api_key: str | None,
        authorization: str | None,
        length: str | None,
        chunks: AsyncIterator[bytes],
    ) -> tuple[int, bytes]:
        """The HTTP status and JSON body answering one call of ``method``."""
        if not self._authorized(api_key, authorization):
            return _error(401, ApiError.UNAUTHORIZED)
        if method != "batch" and method not in _METHODS:
            return _error(404, ApiError.NOT_FOUND)
        try:
            body = await self._read_body(length, chunks)
        except _BodyTooLarge:
            return _error(413, ApiError.LIMIT_EXCEEDED)
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, ApiError.BAD_REQUEST)
        if not isinstance(params, dict):
            return _error(400, ApiError.BAD_REQUEST)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("server API %s", method)
        try:
            reply = await self.call(method, params)
        except BadParams as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("server API %s: bad request: %s", method, exc)
            return _error(400, ApiError.BAD_REQUEST)
        return 200, orjson.dumps(reply)

    def _authorized(self, api_key: str | None, authorization: str | None) -> bool:
        if self._api_key is None:
            return False
        candidates = []
        if api_key is not None:
            candidates.append(api_key)
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == AUTH_SCHEME:
            candidates.append(value.strip())
        return any(
            hmac.compare_digest(candidate.encode(), self._api_key)
            for candidate in candidates
        )

    async def _read_body(
        self, length: str | None, chunks: AsyncIterator[bytes]
    ) -> bytes:
        # isdecimal, not isdigit: "²" is a digit int() refuses.
        if length is not None and length.isdecimal():
            if int(length) > self._max_body_bytes:
                raise _BodyTooLarge
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self._max_body_bytes:
                raise _BodyTooLarge
            parts.append(chunk)
        return b"".join(parts)

    # -- dispatch --------------------------------------------------------

    async def _single(
        self, handler: MethodHandler, params: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            result = await handler(self, params)
        except ApiFailure as exc:
            return {"error": exc.error.payload()}
        except BadParams:
            raise
        except Exception:
            logger.exception("server API method %s failed", handler.__name__)
            return {"error": ApiError.INTERNAL.payload()}
        return {"result": result}

    async def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        commands = params.get("commands")
        if commands is None:
            commands = []
        if not isinstance(commands, list):
            raise BadParams("commands must be a list")
        if _bool(params, "parallel"):
            replies = list(await asyncio.gather(*map(self._command, commands)))
        else:
            replies = [await self._command(command) for command in commands]
        return {"replies": replies}

    async def _command(self, command: Any) -> dict[str, Any]:
        """One command of a batch: ``{"<method>": params}``."""
        if not isinstance(command, dict):
            return {"error": ApiError.BAD_REQUEST.payload()}
        method = next((name for name in _METHODS if name in command), None)
        if method is None:
            return {"error": ApiError.NOT_FOUND.payload()}
        params = command[method]
        if not isinstance(params, dict):
            return {"error": ApiError.BAD_REQUEST.payload()}
        try:
            reply = await self._single(_METHODS[method], params)
        except BadParams:
            return {"error": ApiError.BAD_REQUEST.payload()}
        if "error" in reply:
            return reply
        return {method: reply["result"]}

    # -- methods ---------------------------------------------------------

    async def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _str(params, "channel")
        _check_tags(params)
        skip_history = _bool(params, "skip_history")
        key = _str(params, "idempotency_key")
        if not channel:
            raise ApiFailure(ApiError.BAD_REQUEST)
        data = _json_field(params, "data", "b64data")
        self._options(channel)
        if data is None:
            raise ApiFailure(ApiError.BAD_REQUEST)
        position = await self.node.publish(
            channel, data, skip_history=skip_history, idempotency_key=key or None
        )
        return _position(position)

    async def _publish_reply(
        self, channel: str, data: bytes, skip_history: bool, key: str
    ) -> dict[str, Any]:
        """One channel's publish of a broadcast, as a reply object."""
        try:
            if not channel:
                raise ApiFailure(ApiError.BAD_REQUEST)
            self._options(channel)
            position = await self.node.publish(
                channel, data, skip_history=skip_history, idempotency_key=key or None
            )
        except ApiFailure as exc:
            return {"error": exc.error.payload()}
        except Exception:
            logger.exception("broadcast to %s failed", channel)
            return {"error": ApiError.INTERNAL.payload()}
        return {"result": _position(position)}

    async def _broadcast(self, params: dict[str, Any]) -> dict[str, Any]:
        channels = _str_list(params, "channels")
        _check_tags(params)
        skip_history = _bool(params, "skip_history")
        key = _str(params, "idempotency_key")
        if not channels:
            raise ApiFailure(ApiError.BAD_REQUEST)
        data = _json_field(params, "data", "b64data")
        if data is None:
            raise ApiFailure(ApiError.BAD_REQUEST)
        if not self.node.broker.waits:
            # Nothing to overlap: a task per channel would only cost.
            return {
                "responses": [
                    await self._publish_reply(ch, data, skip_history, key)
                    for ch in channels
                ]
            }
        responses = await asyncio.gather(
            *(self._publish_reply(ch, data, skip_history, key) for ch in channels)
        )
        return {"responses": list(responses)}

    async def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        user = _str(params, "user")
        channel = _str(params, "channel")
        override = _object(params, "override")
        _object(params, "recover_since")
        if not channel:
            raise ApiFailure(ApiError.BAD_REQUEST)
        data = _json_field(params, "data", "b64data")
        info = _json_field(params, "info", "b64info")
        options = _override(self._options(channel), override)
        for session in self._sessions(user, params):
            await session.server_subscribe(
                channel, options=options, data=data, info=info
            )
        return {}

    async def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        user = _str(params, "user")
        channel = _str(params, "channel")
        if channel:
            self._options(channel)
        for session in self._sessions(user, params):
            # No channel means every channel, as in Centrifugo.
            channels = [channel] if channel else list(session.subscriptions)
            for name in channels:
                await session.server_unsubscribe(name)
        return {}

    async def _disconnect(self, params: dict[str, Any]) -> dict[str, Any]:
        user = _str(params, "user")
        keep = set(_str_list(params, "whitelist"))
        custom = _object(params, "disconnect") or {}
        code = _int(custom, "code")
        reason = _str(custom, "reason")
        if code and not MIN_DISCONNECT_CODE <= code <= MAX_DISCONNECT_CODE:
            raise ApiFailure(ApiError.BAD_REQUEST)
        for session in self._sessions(user, params):
            if session.client_id in keep:
                continue
            if code:
                session.close_with(code, reason)
            else:
                session.disconnect(Disconnect.FORCE_NO_RECONNECT)
        return {}

    async def _refresh(self, params: dict[str, Any]) -> dict[str, Any]:
        user = _str(params, "user")
        expired = _bool(params, "expired")
        expire_at = _int(params, "expire_at")
        _json_field(params, "info", "b64info")
        for session in self._sessions(user, params):
            if expired:
                session.disconnect(Disconnect.EXPIRED)
            else:
                session.set_expiry(expire_at if expire_at > 0 else None)
        return {}

    async def _presence(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._presence_channel(params)
        try:
            clients = await self.node.presence(channel)
        except NotImplementedError as exc:
            raise ApiFailure(ApiError.NOT_AVAILABLE) from exc
        return {"presence": {cid: info.to_wire() for cid, info in clients.items()}}

    async def _presence_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._presence_channel(params)
        try:
            stats = await self.node.presence_stats(channel)
        except NotImplementedError as exc:
            raise ApiFailure(ApiError.NOT_AVAILABLE) from exc
        return {"num_clients": stats.num_clients, "num_users": stats.num_users}

    async def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _str(params, "channel")
        limit = _int(params, "limit")
        reverse = _bool(params, "reverse")
        since = _object(params, "since")
        position = None
        if since is not None:
            offset = _int(since, "offset")
            if offset < 0:
                raise BadParams("since.offset must not be negative")
            position = StreamPosition(offset, _str(since, "epoch"))
        self._history_channel(channel)
        if reverse and position is not None and position.offset == 0:
            raise ApiFailure(ApiError.BAD_REQUEST)
        result = await self.node.broker.history(
            channel, since=position, limit=limit, reverse=reverse
        )
        if position and position.epoch and position.epoch != result.position.epoch:
            raise ApiFailure(ApiError.UNRECOVERABLE_POSITION)
        return {
            "publications": [p.to_wire() for p in result.publications],
            "epoch": result.position.epoch,
            "offset": result.position.offset,
        }

    async def _history_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _str(params, "channel")
        self._history_channel(channel)
        await self.node.broker.remove_history(channel)
        return {}

    async def _channels(self, params: dict[str, Any]) -> dict[str, Any]:
        pattern = _str(params, "pattern")
        hub = self.node.hub
        channels: dict[str, Any] = {}
        for channel in hub.channels():
            if pattern and not fnmatchcase(channel, pattern):
                continue
            count = len(hub.subscribers(channel))
            if count:
                channels[channel] = {"num_clients": count}
        return {"channels": channels}

    async def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        node = self.node
        result: dict[str, Any] = {
            "uid": node.uid,
            "name": node.config.name,
            "version": node.config.version,
            "num_clients": node.connection_count,
            "num_users": node.user_count,
            "num_channels": len(node.hub.channels()),
            "num_subs": node.hub.subscription_count,
        }
        if node.uptime:
            result["uptime"] = node.uptime
        return {"nodes": [result]}

    # -- helpers ---------------------------------------------------------

    def _options(self, channel: str) -> ChannelOptions:
        options = self.node.channel_options(channel)
        if options is None:
            raise ApiFailure(ApiError.UNKNOWN_CHANNEL)
        return options

    def _presence_channel(self, params: dict[str, Any]) -> str:
        channel = _str(params, "channel")
        if not channel:
            raise ApiFailure(ApiError.BAD_REQUEST)
        if not self._options(channel).presence:
            raise ApiFailure(ApiError.NOT_AVAILABLE)
        return channel

    def _history_channel(self, channel: str) -> None:
        if not channel:
            raise ApiFailure(ApiError.BAD_REQUEST)
        if not self._options(channel).history.enabled:
            raise ApiFailure(ApiError.NOT_AVAILABLE)

    def _sessions(self, user: str, params: dict[str, Any]) -> list[Session]:
        """The connections a user-scoped method acts on: all of the user's,
        or the one ``client``; a ``session`` matches none."""
        client = _str(params, "client")
        if _str(params, "session"):
            return []
        found = self.node.user_sessions(user)
        if client:
            found = [s for s in found if s.client_id == client]
        return found


_METHODS: dict[str, MethodHandler] = {
    "publish": ServerAPI._publish,
    "broadcast": ServerAPI._broadcast,
    "subscribe": ServerAPI._subscribe,
    "unsubscribe": ServerAPI._unsubscribe,
    "disconnect": ServerAPI._disconnect,
    "presence": ServerAPI._presence,
    "presence_stats": ServerAPI._presence_stats,
    "history": ServerAPI._history,
    "history_remove": ServerAPI._history_remove,
    "info": ServerAPI._info,
    "refresh": ServerAPI._refresh,
    "channels": ServerAPI._channels,
}
"""Methods in Centrifugo's order: a batch command naming several runs the
first."""

_OVERRIDABLE = ("presence", "join_leave", "force_push_join_leave")


def _override(
    options: ChannelOptions, override: dict[str, Any] | None
) -> ChannelOptions:
    """``options`` with the ``{"value": bool}`` overrides of ``subscribe``."""
    if not override:
        return options
    changes: dict[str, Any] = {}
    for name in _OVERRIDABLE:
        wrapped = _object(override, name)
        if wrapped is not None:
            changes[name] = _bool(wrapped, "value")
    return dataclasses.replace(options, **changes) if changes else options


def _position(position: StreamPosition) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if position.offset:
        result["offset"] = position.offset
    if position.epoch:
        result["epoch"] = position.epoch
    return result


# -- request fields ---------------------------------------------------------


def _str(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadParams(f"{name} must be a string")
    return value


def _bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadParams(f"{name} must be a boolean")
    return value


def _int(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadParams(f"{name} must be an integer")
    return value


def _object(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = params.get(name)
    if value is not None and not isinstance(value, dict):
        raise BadParams(f"{name} must be an object")
    return value


def _str_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadParams(f"{name} must be a list of strings")
    return value


def _check_tags(params: dict[str, Any]) -> None:
    tags = _object(params, "tags")
    if tags is not None and not all(isinstance(v, str) for v in tags.values()):
        raise BadParams("tags must map strings to strings")


def _json_field(params: dict[str, Any], name: str, b64_name: str) -> bytes | None:
    """A JSON payload given as a JSON value or as base64 of JSON; None when
    neither is there."""
    encoded = _str(params, b64_name)
    if encoded:
        try:
            raw = base64.b64decode(encoded, validate=True)
            orjson.loads(raw)
        except (binascii.Error, orjson.JSONDecodeError) as exc:
            raise ApiFailure(ApiError.BAD_REQUEST) from exc
        return raw
    if name not in params:
        return None
    return orjson.dumps(params[name])


def _error(status: int, error: ApiError) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": error.payload()})


class _Disconnected(Exception):
    """The client went away before its request body had arrived."""


async def _asgi_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
