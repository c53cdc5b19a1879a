"""The node: one channel server, shared by every session of the process.

It owns the hub, the broker and the token verifier, applies the per-namespace
channel options, and offers the publishing API that the rest of an
application uses (``await node.publish(channel, data)``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from exporthub.realtime.broker import (
    JOIN,
    LEAVE,
    Broker,
    HistoryOptions,
    PresenceStats,
    StreamPosition,
)
from exporthub.realtime.broker.memory import MemoryBroker
from exporthub.realtime.codes import Disconnect
from exporthub.realtime.hub import Hub
from exporthub.realtime.idempotency import DEFAULT_TTL, IdempotentResults
from exporthub.realtime.protocol import ClientInfo, Publication
from exporthub.realtime.stats import Stats
from exporthub.realtime.tokens import TokenVerifier

if TYPE_CHECKING:
    from exporthub.realtime.session import Session, Subscription

logger = logging.getLogger(__name__)

SubscribeHook = Callable[[str, str], Awaitable[bool]]
"""``(user, channel) -> allowed``: may this user subscribe from the client?"""
ConnectHook = Callable[["Session"], Awaitable[None]]
"""Called once a session is connected and its subscriptions are live."""


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Per-namespace behaviour of channels.

    Attributes:
        history: how much history channels keep.
        presence: keep who is subscribed; answers ``presence`` and
            ``presence_stats`` (error 108 "not available" when off).
        join_leave: emit a join event when a connection subscribes and a
            leave event when it unsubscribes or disconnects.
        force_push_join_leave: push those events to every subscriber;
            otherwise only to client-side subscribers that ask for them
            (``join_leave`` in their subscribe request).
    """

    history: HistoryOptions = field(default_factory=HistoryOptions)
    presence: bool = False
    join_leave: bool = False
    force_push_join_leave: bool = False


def namespace_of(channel: str) -> str:
    """The namespace of a channel: what comes before ``:``, or ``""``."""
    head, sep, _ = channel.partition(":")
    return head if sep else ""


@dataclass
class NodeConfig:
    """Settings of the channel server.

    Attributes:
        namespaces: channel options per namespace; a channel whose
            namespace is not listed is unknown (error 102).
        namespace_of: maps a channel name to its namespace.
        name: this node's name in the server API's ``info``.
        idempotency_ttl: seconds a publish result is remembered for its
            idempotency key.
        max_queue_bytes: unsent bytes a client may let pile up before it is
            closed as slow (3008).
        stale_delay: seconds a new connection has to send ``connect``
            before it is closed as stale (3502); 0 waits forever.
    """

    version: str = "exporthub"
    name: str = field(default_factory=socket.gethostname)
    idempotency_ttl: float = DEFAULT_TTL
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    max_frame_bytes: int = 64 * 1024
    max_channel_length: int = 255
    max_queue_bytes: int = 4 * 1024 * 1024
    stale_delay: float = 10.0
    namespaces: dict[str, ChannelOptions] = field(
        default_factory=lambda: {"": ChannelOptions()}
    )
    namespace_of: Callable[[str], str] = namespace_of


async def _deny(user: str, channel: str) -> bool:
    return False


async def _nothing(session: Session) -> None:
    return None


class Node:
    """A channel server node.

    Args:
        config: limits, intervals and channel namespaces.
        secret: the HMAC secret of connection and subscription tokens.
        broker: where publications go; in-memory by default.
        can_subscribe: authorizes client-side subscriptions without a token.
        on_connect: runs after a client connects (to send it a snapshot...).
    """

    def __init__(
        self,
        config: NodeConfig,
        secret: str,
        *,
        broker: Broker | None = None,
        can_subscribe: SubscribeHook = _deny,
        on_connect: ConnectHook = _nothing,
    ) -> None:
        self.config = config
        self.tokens = TokenVerifier(secret)
        self.broker = broker or MemoryBroker()
        self.hub = Hub(self.broker)
        self.stats = Stats()
        self._can_subscribe = can_subscribe
        self._on_connect = on_connect
        self._users: dict[str, dict[Session, None]] = {}
        self._sessions: dict[Session, None] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._idempotent: IdempotentResults[StreamPosition] = IdempotentResults(
            config.idempotency_ttl
        )
        self._broker_lacks: set[str] = set()
        self.uid = str(uuid.uuid4())
        self._started_at: float | None = None
        self.started = False
        self.draining = False

    async def start(self) -> None:
        """Connect the broker; publications flow from then on."""
        await self.broker.start(self._on_publication)
        try:
            self.broker.set_join_leave_handler(self._on_join_leave)
        except NotImplementedError:
            self._broker_lacks.add("join/leave")
        self.started = True
        self._started_at = time.monotonic()
        logger.info(
            "channel server node started (broker %s)", type(self.broker).__name__
        )

    def drain(self) -> None:
        """Tell every client to reconnect elsewhere (3001) and refuse new
        ones; publishing still works, for what finishes during shutdown."""
        if not self.draining:
            self.draining = True
            logger.info(
                "channel server node draining %d connections", len(self._sessions)
            )
        for session in list(self._sessions):
            session.disconnect(Disconnect.SHUTDOWN)

    async def shutdown(self) -> None:
        """Drain, then stop the broker."""
        self.drain()
        await self.broker.close()
        self.started = False

    # -- publishing --------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        skip_history: bool = False,
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Publish ``data`` (JSON-serialisable, or bytes already JSON) to
        ``channel`` on every node; returns its position in history.

        Args:
            skip_history: deliver without keeping it in history (the position
                returned is then ``StreamPosition(0, "")``).
            idempotency_key: a publish to the same channel with the same key
                within ``config.idempotency_ttl`` seconds is not delivered
                again and returns the first one's position.
        """
        payload = data if isinstance(data, bytes) else orjson.dumps(data)
        self.stats.publications[self.config.namespace_of(channel)] += 1
        options = self.channel_options(channel) or ChannelOptions()
        history = HistoryOptions() if skip_history else options.history
        if not idempotency_key:
            return await self.broker.publish(channel, payload, history)
        return await self._idempotent.run(
            (channel, idempotency_key),
            lambda: self.broker.publish(channel, payload, history),
        )

    def _on_publication(self, channel: str, publication: Publication) -> None:
        delivered = self.hub.broadcast(channel, publication)
        if delivered:
            self.stats.deliveries[self.config.namespace_of(channel)] += delivered

    def _on_join_leave(self, channel: str, kind: str, info: ClientInfo) -> None:
        self.hub.broadcast_join_leave(channel, kind, info)

    # -- presence and join/leave -----------------------------------------

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Who is subscribed to ``channel``, by client id.

        Raises:
            NotImplementedError: the broker keeps no presence.
        """
        return await self.broker.presence(channel)

    async def presence_stats(self, channel: str) -> PresenceStats:
        """How many connections and users are subscribed to ``channel``.

        Raises:
            NotImplementedError: the broker keeps no presence.
        """
        return await self.broker.presence_stats(channel)

    async def subscribed(self, session: Session, channel: str) -> None:
        """Record presence of a new subscription; runs before the client is
        told it is subscribed, so that it finds itself in presence."""
        sub = session.subscriptions.get(channel)
        if sub is not None and sub.presence:
            info = _client_info(session, sub)
            await self._optional("presence", self.broker.add_presence(channel, info))

    async def announce_join(self, session: Session, channel: str) -> None:
        """Emit the join event of a subscription; runs after the client was
        told it is subscribed, so that its own join follows that reply."""
        sub = session.subscriptions.get(channel)
        if sub is not None and sub.join_leave:
            info = _client_info(session, sub)
            await self._optional(
                "join/leave", self.broker.publish_join_leave(channel, JOIN, info)
            )

    async def unsubscribed(
        self, session: Session, channel: str, sub: Subscription
    ) -> None:
        """Forget presence of an ended subscription and emit its leave."""
        if sub.presence:
            await self._optional(
                "presence", self.broker.remove_presence(channel, session.client_id)
            )
        if sub.join_leave:
            info = _client_info(session, sub)
            await self._optional(
                "join/leave", self.broker.publish_join_leave(channel, LEAVE, info)
            )

    async def _optional(self, feature: str, operation: Awaitable[None]) -> None:
        try:
            await operation
        except NotImplementedError:
            if feature not in self._broker_lacks:
                self._broker_lacks.add(feature)
                logger.warning(
                    "broker %s has no %s; channels that enable it get none",
                    type(self.broker).__name__,
                    feature,
                )

    # -- channels --------------------------------------------------------

    def channel_options(self, channel: str) -> ChannelOptions | None:
        """The options of the channel's namespace; None when unknown."""
        return self.config.namespaces.get(self.config.namespace_of(channel))

    async def can_subscribe(self, user: str, channel: str) -> bool:
        return await self._can_subscribe(user, channel)

    # -- sessions --------------------------------------------------------

    def register(self, session: Session) -> None:
        self._sessions[session] = None
        self._users.setdefault(session.user, {})[session] = None

    def unregister(self, session: Session) -> None:
        self._sessions.pop(session, None)
        sessions = self._users.get(session.user)
        if sessions is not None:
            sessions.pop(session, None)
            if not sessions:
                del self._users[session.user]
        for channel, sub in list(session.subscriptions.items()):
            if self.hub.discard(channel, session):
                self._spawn(self.broker.unsubscribe(channel))
            if sub.presence or sub.join_leave:
                self._spawn(self.unsubscribed(session, channel, sub))
        session.subscriptions.clear()

    async def connected(self, session: Session) -> None:
        await self._on_connect(session)

    def user_sessions(self, user: str) -> list[Session]:
        return list(self._users.get(user, ()))

    def disconnect_user(self, user: str, disconnect: Disconnect) -> int:
        """Close every connection of ``user``; returns how many."""
        sessions = self.user_sessions(user)
        for session in sessions:
            session.disconnect(disconnect)
        return len(sessions)

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    @property
    def user_count(self) -> int:
        """Distinct users with at least one connection to this node."""
        return len(self._users)

    @property
    def uptime(self) -> int:
        """Whole seconds since :meth:`start`; 0 before."""
        if self._started_at is None:
            return 0
        return int(time.monotonic() - self._started_at)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _client_info(session: Session, sub: Subscription) -> ClientInfo:
    return ClientInfo(user=session.user, client=session.client_id, chan_info=sub.info)
