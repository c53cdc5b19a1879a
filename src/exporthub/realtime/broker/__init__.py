"""Brokers carry publications between nodes and keep channel history.

:class:`Broker` is the interface; ``memory`` serves one process, ``redis``
shares channels and history between nodes. Presence and join/leave events
are optional for a broker: their methods raise :class:`NotImplementedError`
unless the broker implements them, and the node then answers presence
requests with "not available" and emits no join/leave pushes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from exporthub.realtime.protocol import ClientInfo, Publication

PublicationHandler = Callable[[str, Publication], None]
"""Called by a broker for every publication a node must deliver locally."""

DEFAULT_META_TTL = 24 * 3600.0
"""Seconds a channel's epoch and last offset outlive its last publication or
read. Longer than any history TTL, so that a channel that was quiet for a
while goes on with the same epoch: clients that missed nothing still
recover, and live subscribers see no restarted stream."""

JOIN = "join"
LEAVE = "leave"
JoinLeaveHandler = Callable[[str, str, ClientInfo], None]
"""``(channel, JOIN or LEAVE, info)``: called by a broker for every join or
leave event on a channel the node has subscribed to."""


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's history: the last offset and the epoch.

    The epoch changes whenever the stream is lost (a restart of the memory
    broker, a channel unused for longer than the meta TTL), so a client can
    tell that offsets from before no longer mean anything.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How much history a channel keeps: at most ``size`` publications,
    none older than ``ttl`` seconds. ``size == 0`` keeps none."""

    size: int = 0
    ttl: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0


@dataclass(frozen=True, slots=True)
class PresenceStats:
    """How many connections, and distinct users, are present in a channel."""

    num_clients: int
    num_users: int


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Publications read from history and the stream's current position."""

    publications: list[Publication]
    position: StreamPosition


class Broker(ABC):
    """Delivery of publications to every node, and history.

    A node calls :meth:`start` with its handler before anything else;
    afterwards every publication on a channel the node has subscribed to
    reaches that handler, on every node, in offset order, carrying its
    offset and epoch. :meth:`subscribe` returns once publications of the
    channel are flowing, so history read afterwards leaves no gap.
    """

    waits: ClassVar[bool] = True
    """Whether :meth:`publish` and :meth:`subscribe` wait on something
    outside the process, so that overlapping them is worth a task each. A
    broker whose calls complete without waiting says False: a broadcast then
    publishes one channel after the other, and the hub subscribes a new
    channel without a task of its own."""

    @abstractmethod
    async def start(self, handler: PublicationHandler) -> None:
        """Begin delivering publications to ``handler``."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering and release connections."""

    @abstractmethod
    async def publish(
        self, channel: str, data: bytes, history: HistoryOptions
    ) -> StreamPosition:
        """Append ``data`` to the channel's history (when it keeps one) and
        deliver it, as one atomic step; return its position."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """This node has a first local subscriber to ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """This node has no local subscriber to ``channel`` any more."""

    @abstractmethod
    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = -1,
        reverse: bool = False,
    ) -> HistoryResult:
        """Publications after ``since`` (all kept ones when None), at most
        ``limit`` (``-1`` for all, ``0`` for just the position)."""

    @abstractmethod
    async def remove_history(self, channel: str) -> None:
        """Forget the channel's history; its offsets go on from where they were."""

    async def ping(self) -> None:  # noqa: B027 - optional for brokers with no remote
        """Raise when the broker cannot be reached; memory brokers always can."""

    # -- presence and join/leave (optional) --------------------------------

    def set_join_leave_handler(self, handler: JoinLeaveHandler) -> None:
        """Deliver join/leave events of subscribed channels to ``handler``,
        like publications; called once by the node, after :meth:`start`.

        Raises:
            NotImplementedError: the broker carries no join/leave events.
        """
        raise NotImplementedError(f"{type(self).__name__} has no join/leave")

    async def publish_join_leave(
        self, channel: str, kind: str, info: ClientInfo
    ) -> None:
        """Deliver a ``JOIN`` or ``LEAVE`` event about ``info`` to every node
        subscribed to ``channel``.

        Raises:
            NotImplementedError: the broker carries no join/leave events.
        """
        raise NotImplementedError(f"{type(self).__name__} has no join/leave")

    async def add_presence(self, channel: str, info: ClientInfo) -> None:
        """Record that connection ``info.client`` is subscribed to ``channel``;
        adding it again replaces its info.

        Raises:
            NotImplementedError: the broker keeps no presence.
        """
        raise NotImplementedError(f"{type(self).__name__} has no presence")

    async def remove_presence(self, channel: str, client: str) -> None:
        """Forget connection ``client`` in ``channel``'s presence.

        Raises:
            NotImplementedError: the broker keeps no presence.
        """
        raise NotImplementedError(f"{type(self).__name__} has no presence")

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """The connections present in ``channel``, by client id.

        Raises:
            NotImplementedError: the broker keeps no presence.
        """
        raise NotImplementedError(f"{type(self).__name__} has no presence")

    async def presence_stats(self, channel: str) -> PresenceStats:
        """Counts of :meth:`presence`; brokers may count without listing.

        Raises:
            NotImplementedError: the broker keeps no presence.
        """
        clients = await self.presence(channel)
        users = {info.user for info in clients.values()}
        return PresenceStats(num_clients=len(clients), num_users=len(users))
