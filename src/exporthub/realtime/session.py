"""One client connection's protocol state machine, with no socket in it.

A :class:`Session` takes decoded frames from its transport, answers commands
and receives publications from the node's hub; everything it sends goes
through :meth:`Transport.write`, and a disconnect through
:meth:`Transport.close`. Tests drive it with a recording transport.

States: ``CONNECTING`` until a valid ``connect`` command, then ``CONNECTED``,
then ``CLOSED`` for good.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from exporthub.realtime import protocol
from exporthub.realtime.broker import StreamPosition
from exporthub.realtime.codes import CLOSE_MESSAGE_TOO_BIG, Disconnect, ErrorCode
from exporthub.realtime.protocol import ProtocolError, Publication
from exporthub.realtime.tokens import InvalidToken, TokenExpired

if TYPE_CHECKING:
    from exporthub.realtime.node import ChannelOptions, Node

logger = logging.getLogger(__name__)

FIRST_PING_SPREAD = 0.5
"""Share of the ping interval over which first pings are spread."""
MAX_CLOSE_REASON = 123
"""RFC 6455 leaves 123 bytes for a close frame's reason."""
SNAPSHOT_ATTEMPTS = 5
"""Loads of a snapshot before :meth:`Session.send_snapshot` gives up."""


SnapshotReply = Callable[[bytes | None, BaseException | None], None]
SnapshotLoad = Callable[[SnapshotReply], None]


def _ignore(sent: bool) -> None:
    pass


class Transport(Protocol):
    """What a session needs from the connection it runs on."""

    def write(self, message: bytes) -> None:
        """Queue one encoded message; the transport frames and sends it."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection with a WebSocket close code and reason."""


class State(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class CommandError(Exception):
    """Ends one command with an error reply; the connection stays open."""

    def __init__(self, error: ErrorCode) -> None:
        super().__init__(error.message)
        self.error = error


class DisconnectError(Exception):
    """Ends the connection with a disconnect code."""

    def __init__(self, disconnect: Disconnect, detail: str = "") -> None:
        super().__init__(disconnect.reason)
        self.disconnect = disconnect
        self.detail = detail


@dataclass(slots=True)
class Subscription:
    """A channel this session receives, and where in its stream it is."""

    server_side: bool
    offset: int = 0
    epoch: str = ""
    pending: list[Publication | bytes] | None = None
    """Publications (and encoded join/leave pushes) that arrived while the
    subscribe reply was being built; sent right after it."""
    presence: bool = False
    """Listed in the channel's presence while subscribed."""
    join_leave: bool = False
    """Emits join and leave events."""
    push_join_leave: bool = False
    """Receives the channel's join and leave events."""
    info: bytes | None = None
    """JSON shown as ``chan_info`` in presence and join/leave."""


class Session:
    """The server side of one client connection.

    Args:
        node: the node this session belongs to (hub, broker, tokens, hooks).
        transport: where replies and pushes go.
    """

    __slots__ = (
        "_expiry_timer",
        "_ping_timer",
        "_pong_deadline",
        "_stale_timer",
        "client_id",
        "expires_at",
        "node",
        "state",
        "subscriptions",
        "transport",
        "user",
    )

    def __init__(self, node: Node, transport: Transport) -> None:
        self.node = node
        self.transport = transport
        self.client_id = str(uuid.uuid4())
        self.user = ""
        self.state = State.CONNECTING
        self.subscriptions: dict[str, Subscription] = {}
        self.expires_at: int | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._pong_deadline: float | None = None
        self._stale_timer: asyncio.TimerHandle | None = None

    def expect_connect(self, timer: asyncio.TimerHandle | None = None) -> None:
        """Close the connection as stale (3502) unless it has sent a valid
        ``connect`` within ``node.config.stale_delay`` seconds.

        ``timer`` is one the transport already started when the connection
        was accepted (so that the handshake counts too), whose end calls
        :meth:`check_stale`; the session cancels it once connected, as it
        would its own.
        """
        if timer is not None:
            self._stale_timer = timer
            return
        delay = self.node.config.stale_delay
        if delay > 0 and self.state is State.CONNECTING:
            loop = asyncio.get_running_loop()
            self._stale_timer = loop.call_later(delay, self.check_stale)

    def check_stale(self) -> None:
        """Disconnect as stale (3502) if still not connected."""
        self._stale_timer = None
        if self.state is State.CONNECTING:
            self.disconnect(Disconnect.STALE)

    # -- input -----------------------------------------------------------

    async def handle_frame(self, frame: bytes | str) -> None:
        """Process every command in one WebSocket message."""
        if self.state is State.CLOSED:
            return
        if len(frame) > self.node.config.max_frame_bytes:
            self._close_raw(CLOSE_MESSAGE_TOO_BIG, "message too big")
            return
        try:
            commands = protocol.decode_commands(frame)
        except ProtocolError as exc:
            self.disconnect(Disconnect.BAD_REQUEST, str(exc))
            return
        for command in commands:
            if self.state is State.CLOSED:
                return
            try:
                await self._dispatch(command)
            except DisconnectError as exc:
                self.disconnect(exc.disconnect, exc.detail)
            except Exception:
                logger.exception("command failed on client %s", self.client_id)
                self.disconnect(Disconnect.INTERNAL)

    async def _dispatch(self, command: dict[str, Any]) -> None:
        command_id = command.get("id", 0)
        if not command or (command_id == 0 and set(command) <= {"id"}):
            self._pong()
            return
        if not isinstance(command_id, int) or command_id <= 0:
            if "send" in command:
                return  # Asynchronous messages are not used: ignored.
            raise DisconnectError(Disconnect.BAD_REQUEST, "command id required")
        if self.state is State.CONNECTING and "connect" not in command:
            raise DisconnectError(Disconnect.BAD_REQUEST, "connect first")
        method = next((m for m in _HANDLERS if m in command), None)
        if method is None:
            self._reply_error(command_id, ErrorCode.METHOD_NOT_FOUND)
            return
        request = command[method]
        if request is None:
            request = {}
        if not isinstance(request, dict):
            raise DisconnectError(Disconnect.BAD_REQUEST, f"{method} must be an object")
        started = time.perf_counter()
        outcome = "ok"
        try:
            await _HANDLERS[method](self, command_id, request)
        except CommandError as exc:
            outcome = exc.error.name.lower()
            self._reply_error(command_id, exc.error)
        except DisconnectError as exc:
            outcome = exc.disconnect.name.lower()
            raise
        finally:
            self.node.stats.command(method, outcome, time.perf_counter() - started)

    # -- commands --------------------------------------------------------

    async def _connect(self, command_id: int, request: dict[str, Any]) -> None:
        if self.state is not State.CONNECTING:
            raise DisconnectError(Disconnect.BAD_REQUEST, "already connected")
        if self.node.draining:
            raise DisconnectError(Disconnect.SHUTDOWN)
        try:
            claims = self.node.tokens.connect(request.get("token", ""))
        except TokenExpired as exc:
            raise CommandError(ErrorCode.TOKEN_EXPIRED) from exc
        except InvalidToken as exc:
            raise DisconnectError(Disconnect.INVALID_TOKEN, str(exc)) from exc

        self.user = claims.user
        self.expires_at = claims.expires_at
        self.state = State.CONNECTED
        self.node.register(self)

        wanted = request.get("subs")
        recover = wanted if isinstance(wanted, dict) else {}
        subs: dict[str, dict[str, Any]] = {}
        for channel in claims.channels:
            ask = recover.get(channel)
            subs[channel] = await self._join(
                channel, server_side=True, ask=ask if isinstance(ask, dict) else {}
            )

        result: dict[str, Any] = {
            "client": self.client_id,
            "version": self.node.config.version,
            "ping": int(self.node.config.ping_interval),
            "pong": True,
        }
        if subs:
            result["subs"] = subs
        self._set_expiry(result)
        self.transport.write(protocol.encode_reply(command_id, "connect", result))
        for channel in claims.channels:
            self._flush_pending(channel)
        for channel in claims.channels:
            await self.node.announce_join(self, channel)
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None
        self._schedule_ping()
        await self.node.connected(self)

    async def _subscribe(self, command_id: int, request: dict[str, Any]) -> None:
        channel = request.get("channel")
        if not isinstance(channel, str) or not channel:
            raise DisconnectError(Disconnect.BAD_REQUEST, "channel required")
        if len(channel) > self.node.config.max_channel_length:
            raise CommandError(ErrorCode.BAD_REQUEST)
        if channel in self.subscriptions:
            raise CommandError(ErrorCode.ALREADY_SUBSCRIBED)
        if self.node.channel_options(channel) is None:
            raise CommandError(ErrorCode.UNKNOWN_CHANNEL)
        await self._authorize(channel, request.get("token"))
        result = await self._join(channel, server_side=False, ask=request)
        self.transport.write(protocol.encode_reply(command_id, "subscribe", result))
        self._flush_pending(channel)
        await self.node.announce_join(self, channel)

    async def _authorize(self, channel: str, token: Any) -> None:
        if token:
            try:
                claims = self.node.tokens.subscription(token)
            except TokenExpired as exc:
                raise CommandError(ErrorCode.TOKEN_EXPIRED) from exc
            except InvalidToken as exc:
                raise CommandError(ErrorCode.PERMISSION_DENIED) from exc
            if claims.channel != channel or claims.user != self.user:
                raise CommandError(ErrorCode.PERMISSION_DENIED)
            return
        if not await self.node.can_subscribe(self.user, channel):
            raise CommandError(ErrorCode.PERMISSION_DENIED)

    async def _unsubscribe(self, command_id: int, request: dict[str, Any]) -> None:
        channel = request.get("channel")
        if not isinstance(channel, str) or not channel:
            raise DisconnectError(Disconnect.BAD_REQUEST, "channel required")
        await self.leave(channel)
        self.transport.write(protocol.encode_reply(command_id, "unsubscribe", {}))

    async def _publish(self, command_id: int, request: dict[str, Any]) -> None:
        # Channels carry what the service does; clients only listen.
        raise CommandError(ErrorCode.PERMISSION_DENIED)

    async def _history(self, command_id: int, request: dict[str, Any]) -> None:
        channel = request.get("channel")
        if not isinstance(channel, str) or not channel:
            raise DisconnectError(Disconnect.BAD_REQUEST, "channel required")
        options = self.node.channel_options(channel)
        if options is None:
            raise CommandError(ErrorCode.UNKNOWN_CHANNEL)
        if channel not in self.subscriptions and not await self.node.can_subscribe(
            self.user, channel
        ):
            raise CommandError(ErrorCode.PERMISSION_DENIED)
        if not options.history.enabled:
            raise CommandError(ErrorCode.NOT_AVAILABLE)
        since = request.get("since")
        position = None
        if isinstance(since, dict):
            position = StreamPosition(
                int(since.get("offset", 0)), str(since.get("epoch", ""))
            )
        limit = request.get("limit", 0)
        if not isinstance(limit, int):
            raise CommandError(ErrorCode.BAD_REQUEST)
        result = await self.node.broker.history(
            channel,
            since=position,
            # -1 asks for the whole history, as in Centrifugo; 0 for the
            # position only, unless a position to start from is given.
            limit=limit if limit > 0 else (-1 if position or limit < 0 else 0),
            reverse=bool(request.get("reverse", False)),
        )
        if position is not None and position.epoch != result.position.epoch:
            raise CommandError(ErrorCode.UNRECOVERABLE_POSITION)
        reply: dict[str, Any] = {
            "publications": [p.to_wire() for p in result.publications],
            "epoch": result.position.epoch,
            "offset": result.position.offset,
        }
        self.transport.write(protocol.encode_reply(command_id, "history", reply))

    async def _refresh(self, command_id: int, request: dict[str, Any]) -> None:
        try:
            claims = self.node.tokens.connect(request.get("token", ""))
        except TokenExpired as exc:
            raise DisconnectError(Disconnect.EXPIRED) from exc
        except InvalidToken as exc:
            raise DisconnectError(Disconnect.INVALID_TOKEN, str(exc)) from exc
        if claims.user != self.user:
            raise DisconnectError(Disconnect.INVALID_TOKEN, "token of another user")
        self.expires_at = claims.expires_at
        result: dict[str, Any] = {
            "client": self.client_id,
            "version": self.node.config.version,
        }
        self._set_expiry(result)
        self.transport.write(protocol.encode_reply(command_id, "refresh", result))

    async def _presence(self, command_id: int, request: dict[str, Any]) -> None:
        channel = await self._presence_channel(request)
        try:
            clients = await self.node.presence(channel)
        except NotImplementedError as exc:
            raise CommandError(ErrorCode.NOT_AVAILABLE) from exc
        reply = {"presence": {cid: info.to_wire() for cid, info in clients.items()}}
        self.transport.write(protocol.encode_reply(command_id, "presence", reply))

    async def _presence_stats(self, command_id: int, request: dict[str, Any]) -> None:
        channel = await self._presence_channel(request)
        try:
            stats = await self.node.presence_stats(channel)
        except NotImplementedError as exc:
            raise CommandError(ErrorCode.NOT_AVAILABLE) from exc
        reply = {"num_clients": stats.num_clients, "num_users": stats.num_users}
        self.transport.write(protocol.encode_reply(command_id, "presence_stats", reply))

    async def _presence_channel(self, request: dict[str, Any]) -> str:
        """The channel of a presence request this client may make."""
        channel = request.get("channel")
        if not isinstance(channel, str) or not channel:
            raise DisconnectError(Disconnect.BAD_REQUEST, "channel required")
        options = self.node.channel_options(channel)
        if options is None:
            raise CommandError(ErrorCode.UNKNOWN_CHANNEL)
        if channel not in self.subscriptions and not await self.node.can_subscribe(
            self.user, channel
        ):
            raise CommandError(ErrorCode.PERMISSION_DENIED)
        if not options.presence:
            raise CommandError(ErrorCode.NOT_AVAILABLE)
        return channel

    async def _not_available(self, command_id: int, request: dict[str, Any]) -> None:
        raise CommandError(ErrorCode.NOT_AVAILABLE)

    async def _ping_command(self, command_id: int, request: dict[str, Any]) -> None:
        self.transport.write(protocol.encode_reply(command_id, "ping", {}))

    # -- subscriptions ---------------------------------------------------

    async def _join(
        self,
        channel: str,
        *,
        server_side: bool,
        ask: dict[str, Any],
        options: ChannelOptions | None = None,
        info: bytes | None = None,
    ) -> dict[str, Any]:
        """Start receiving ``channel`` and build its subscribe result.

        The session is registered in the hub before history is read, and
        publications arriving meanwhile are held back, so that nothing falls
        between what history returns and what the hub delivers. ``options``
        replaces the namespace's options for this subscription.
        """
        if options is None:
            options = self.node.channel_options(channel)
        sub = Subscription(server_side=server_side, pending=[], info=info)
        if options is not None:
            sub.presence = options.presence
            sub.join_leave = options.join_leave
            # Server-side subscribers cannot ask for join/leave; only the
            # namespace can push it to them.
            sub.push_join_leave = options.force_push_join_leave or (
                options.join_leave and not server_side and ask.get("join_leave") is True
            )
        self.subscriptions[channel] = sub
        await self.node.hub.add(channel, self)
        await self.node.subscribed(self, channel)
        result: dict[str, Any] = {}
        if options is None or not options.history.enabled:
            return result

        result["recoverable"] = True
        result["positioned"] = True
        recovering = bool(ask.get("recover"))
        since_offset = _as_int(ask.get("offset"))
        since_epoch = str(ask.get("epoch") or "")
        if recovering:
            history = await self.node.broker.history(
                channel, since=StreamPosition(since_offset, since_epoch)
            )
            recovered = history.position.epoch == since_epoch and (
                (
                    history.publications
                    and history.publications[0].offset == since_offset + 1
                )
                or (
                    not history.publications and history.position.offset == since_offset
                )
            )
            result["was_recovering"] = True
            result["recovered"] = recovered
            if recovered and history.publications:
                result["publications"] = [p.to_wire() for p in history.publications]
        else:
            history = await self.node.broker.history(channel, limit=0)
        sub.offset = history.position.offset
        sub.epoch = history.position.epoch
        result["epoch"] = sub.epoch
        result["offset"] = sub.offset
        if recovering and result["recovered"]:
            # The client's own position: each recovered publication moves
            # it, so a connection lost halfway through them recovers again
            # from the last one the client really processed.
            result["offset"] = since_offset
        return result

    def _flush_pending(self, channel: str) -> None:
        sub = self.subscriptions.get(channel)
        if sub is None or sub.pending is None:
            return
        pending, sub.pending = sub.pending, None
        for item in pending:
            if isinstance(item, bytes):
                self.transport.write(item)
                continue
            if item.offset and item.offset <= sub.offset:
                continue
            self.deliver(channel, item, None)

    def deliver(
        self, channel: str, publication: Publication, frame: bytes | None
    ) -> None:
        """Send a publication of ``channel``; ``frame`` is its push, encoded
        once by the hub for every subscriber (None to encode it here)."""
        sub = self.subscriptions.get(channel)
        if sub is None or self.state is not State.CONNECTED:
            return
        if sub.pending is not None:
            sub.pending.append(publication)
            return
        if publication.offset:
            restarted = bool(publication.epoch) and publication.epoch != sub.epoch
            if not restarted and publication.offset <= sub.offset:
                return  # Already sent, by recovery.
            if restarted or publication.offset != sub.offset + 1:
                # Publications went missing on their way here (the broker
                # lost its connection) or the stream started over: the
                # client reconnects and recovers, or learns it cannot.
                self.disconnect(Disconnect.INSUFFICIENT_STATE, channel)
                return
            sub.offset = publication.offset
        if frame is None:
            frame = protocol.encode_publication_push(channel, publication)
        self.transport.write(frame)

    def deliver_join_leave(self, channel: str, frame: bytes) -> None:
        """Send an encoded join or leave push of ``channel`` if this
        subscription receives them."""
        sub = self.subscriptions.get(channel)
        if sub is None or not sub.push_join_leave or self.state is not State.CONNECTED:
            return
        if sub.pending is not None:
            sub.pending.append(frame)
            return
        self.transport.write(frame)

    async def leave(self, channel: str) -> bool:
        """Stop receiving ``channel``; False when it was not subscribed."""
        sub = self.subscriptions.pop(channel, None)
        if sub is None:
            return False
        await self.node.hub.remove(channel, self)
        await self.node.unsubscribed(self, channel, sub)
        return True

    async def server_subscribe(
        self,
        channel: str,
        *,
        options: ChannelOptions | None = None,
        data: bytes | None = None,
        info: bytes | None = None,
    ) -> None:
        """Subscribe from the server side and tell the client with a push.

        Args:
            options: replace the namespace's options for this subscription.
            data: JSON sent to the client in the ``subscribe`` push.
            info: JSON shown as ``chan_info`` in presence and join/leave.
        """
        if channel in self.subscriptions or self.state is not State.CONNECTED:
            return
        result = await self._join(
            channel, server_side=True, ask={}, options=options, info=info
        )
        if data is not None:
            result["data"] = orjson.Fragment(data)
        self.transport.write(protocol.encode_push(channel, "subscribe", result))
        self._flush_pending(channel)
        await self.node.announce_join(self, channel)

    def send(self, channel: str, data: bytes) -> bool:
        """Push ``data`` (JSON) on ``channel`` to this connection only, out of
        the channel's stream: it has no offset and is not kept in history.
        False when the session is not subscribed to ``channel``."""
        sub = self.subscriptions.get(channel)
        if sub is None or self.state is not State.CONNECTED:
            return False
        push = protocol.encode_publication_push(channel, Publication(data))
        self.transport.write(push)
        return True

    def send_snapshot(
        self,
        channel: str,
        load: SnapshotLoad,
        *,
        attempts: int = SNAPSHOT_ATTEMPTS,
        done: Callable[[bool], None] | None = None,
    ) -> None:
        """Send the snapshot ``load`` replies with on ``channel`` like
        :meth:`send`, unless a publication of the channel reached this
        session while it loaded.

        ``load(reply)`` starts loading and calls ``reply(snapshot, None)``,
        or ``reply(None, exc)`` if loading failed; nothing waits for it, so
        a connection costs no suspended task meanwhile. A snapshot read
        before a publication but sent after it would undo what the
        publication said, so it is loaded again (up to ``attempts`` times).
        A failed load disconnects the client (3004, reconnect) to try again
        later. ``done`` is called with False when nothing was sent: no
        subscription, nothing to load, a failure, or the channel never held
        still.
        """
        report = done or _ignore
        sub = self.subscriptions.get(channel)
        if sub is None or attempts < 1 or self.state is State.CLOSED:
            report(False)
            return
        seen = (sub.offset, sub.epoch)

        def reply(snapshot: bytes | None, error: BaseException | None) -> None:
            if error is not None:
                logger.error(
                    "loading a snapshot for client %s failed",
                    self.client_id,
                    exc_info=error,
                )
                self.disconnect(Disconnect.INTERNAL)
                report(False)
                return
            now = self.subscriptions.get(channel)
            if snapshot is None or now is None or self.state is State.CLOSED:
                report(False)
            elif (now.offset, now.epoch) == seen:
                report(self.send(channel, snapshot))
            else:
                self.send_snapshot(channel, load, attempts=attempts - 1, done=done)

        load(reply)

    async def server_unsubscribe(self, channel: str) -> None:
        """Unsubscribe from the server side and tell the client with a push."""
        if await self.leave(channel):
            body = {"code": 2000, "reason": "server unsubscribe"}
            self.transport.write(protocol.encode_push(channel, "unsubscribe", body))

    # -- liveness and expiry ---------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self.node.config.ping_interval
        if interval > 0 and self.state is State.CONNECTED:
            loop = asyncio.get_running_loop()
            # The first ping comes somewhere in the second half of the
            # interval, so clients that connected together (after a restart)
            # are not all pinged in the same instant ever after.
            first = interval * (1 - random.random() * FIRST_PING_SPREAD)
            self._ping_timer = loop.call_later(first, self._send_ping)

    def _send_ping(self) -> None:
        if self.state is not State.CONNECTED:
            return
        now = time.monotonic()
        if self._pong_deadline is not None and now > self._pong_deadline:
            self.disconnect(Disconnect.NO_PONG)
            return
        if self._pong_deadline is None:
            self._pong_deadline = now + self.node.config.pong_timeout
        self.transport.write(protocol.EMPTY_OBJECT)
        loop = asyncio.get_running_loop()
        # Check again when the pong is due, then ping on the usual beat.
        self._ping_timer = loop.call_later(
            self.node.config.pong_timeout, self._check_pong
        )

    def _check_pong(self) -> None:
        if self.state is not State.CONNECTED:
            return
        if self._pong_deadline is not None:
            self.disconnect(Disconnect.NO_PONG)
            return
        remaining = self.node.config.ping_interval - self.node.config.pong_timeout
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(max(remaining, 0.0), self._send_ping)

    def take_pong(self, frame: bytes) -> bool:
        """Take ``frame`` at once if it is a bare pong (``{}``, what clients
        answer every ping with) and return True; anything else goes through
        :meth:`handle_frame`."""
        if frame != protocol.EMPTY_OBJECT or self.state is not State.CONNECTED:
            return False
        self._pong_deadline = None
        return True

    def _pong(self) -> None:
        if self.state is not State.CONNECTED:
            raise DisconnectError(Disconnect.BAD_REQUEST, "connect first")
        self._pong_deadline = None

    def _set_expiry(self, result: dict[str, Any]) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if self.expires_at is None:
            return
        ttl = max(1, int(self.expires_at - time.time()))
        result["expires"] = True
        result["ttl"] = ttl
        loop = asyncio.get_running_loop()
        self._expiry_timer = loop.call_later(ttl + 1, self._check_expiry)

    def set_expiry(self, expires_at: int | None) -> None:
        """Move the connection's expiry to Unix time ``expires_at`` (None:
        never) from the server side, and tell the client with a ``refresh``
        push; a time already past disconnects it as expired."""
        if self.state is not State.CONNECTED:
            return
        if expires_at is not None and expires_at <= time.time():
            self.disconnect(Disconnect.EXPIRED)
            return
        self.expires_at = expires_at
        body: dict[str, Any] = {}
        self._set_expiry(body)
        self.transport.write(protocol.encode({"push": {"refresh": body}}))

    def _check_expiry(self) -> None:
        if self.expires_at is not None and time.time() >= self.expires_at:
            self.disconnect(Disconnect.EXPIRED)

    # -- output ----------------------------------------------------------

    def _reply_error(self, command_id: int, error: ErrorCode) -> None:
        self.transport.write(protocol.encode_error(command_id, error.payload()))

    def disconnect(self, disconnect: Disconnect, detail: str = "") -> None:
        """Close the connection with ``disconnect``'s code; ``detail`` is
        appended to the reason to say what exactly was wrong."""
        reason = f"{disconnect.reason}: {detail}" if detail else disconnect.reason
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("disconnect %s user=%r: %s", self.client_id, self.user, reason)
        self._close_raw(disconnect.code, reason)

    def close_with(self, code: int, reason: str) -> None:
        """Close the connection with a code and reason chosen by the
        application (3000-3499: the client reconnects; 3500-4999: it stops)."""
        self._close_raw(code, reason)

    def _close_raw(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.node.stats.disconnects[reason.partition(":")[0]] += 1
        encoded = reason.encode()[:MAX_CLOSE_REASON]
        self.transport.close(code, encoded.decode(errors="ignore"))
        self.closed()

    def closed(self) -> None:
        """The connection is gone: drop timers and subscriptions."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        for timer in (self._ping_timer, self._expiry_timer, self._stale_timer):
            if timer is not None:
                timer.cancel()
        # Cancelled handles still hold this session; let it go without
        # waiting for the cyclic collector.
        self._ping_timer = self._expiry_timer = self._stale_timer = None
        self.node.unregister(self)


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


_HANDLERS = {
    "connect": Session._connect,
    "subscribe": Session._subscribe,
    "unsubscribe": Session._unsubscribe,
    "publish": Session._publish,
    "history": Session._history,
    "refresh": Session._refresh,
    "presence": Session._presence,
    "presence_stats": Session._presence_stats,
    "rpc": Session._not_available,
    "sub_refresh": Session._not_available,
    "ping": Session._ping_command,
}
