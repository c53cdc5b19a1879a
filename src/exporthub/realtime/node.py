"""The node: one channel server, shared by every session of the process.

It owns the hub, the broker and the token verifier, applies the per-namespace
channel options, and offers the publishing API that the rest of an
application uses (``await node.publish(channel, data)``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from exporthub.realtime.broker import Broker, HistoryOptions, StreamPosition
from exporthub.realtime.broker.memory import MemoryBroker
from exporthub.realtime.codes import Disconnect
from exporthub.realtime.hub import Hub
from exporthub.realtime.protocol import Publication
from exporthub.realtime.tokens import TokenVerifier

if TYPE_CHECKING:
    from exporthub.realtime.session import Session

logger = logging.getLogger(__name__)

SubscribeHook = Callable[[str, str], Awaitable[bool]]
"""``(user, channel) -> allowed``: may this user subscribe from the client?"""
ConnectHook = Callable[["Session"], Awaitable[None]]
"""Called once a session is connected and its subscriptions are live."""


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Per-namespace behaviour of channels."""

    history: HistoryOptions = field(default_factory=HistoryOptions)


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
    """

    version: str = "exporthub"
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    max_frame_bytes: int = 64 * 1024
    max_channel_length: int = 255
    max_queue_bytes: int = 4 * 1024 * 1024
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
        self._can_subscribe = can_subscribe
        self._on_connect = on_connect
        self._users: dict[str, dict[Session, None]] = {}
        self._sessions: dict[Session, None] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.started = False
        self.draining = False

    async def start(self) -> None:
        """Connect the broker; publications flow from then on."""
        await self.broker.start(self._on_publication)
        self.started = True
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

    async def publish(self, channel: str, data: Any) -> StreamPosition:
        """Publish ``data`` (JSON-serialisable, or bytes already JSON) to
        ``channel`` on every node; returns its position in history."""
        payload = data if isinstance(data, bytes) else orjson.dumps(data)
        options = self.channel_options(channel) or ChannelOptions()
        return await self.broker.publish(channel, payload, options.history)

    def _on_publication(self, channel: str, publication: Publication) -> None:
        self.hub.broadcast(channel, publication)

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
        for channel in list(session.subscriptions):
            if self.hub.discard(channel, session):
                self._spawn(self.broker.unsubscribe(channel))
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

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
