"""The hub maps channels to the local sessions subscribed to them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from exporthub.realtime import protocol
from exporthub.realtime.broker import Broker
from exporthub.realtime.protocol import ClientInfo, Publication

if TYPE_CHECKING:
    from exporthub.realtime.session import Session


class Hub:
    """Local subscribers per channel, and fan-out of publications to them.

    The broker is told when a channel gets its first local subscriber and
    loses its last one, so a node only receives the channels it serves.

    Most channels are personal: one subscriber, the user's one connection.
    Such a channel maps to the session itself; a dict of sessions (in the
    order they joined) only comes with the second subscriber. Every
    connection has five personal channels, so that is five dicts fewer per
    connection to allocate and for the garbage collector to walk.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channels: dict[str, Session | dict[Session, None]] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}

    async def add(self, channel: str, session: Session) -> None:
        """Add a local subscriber; returns once the broker delivers the
        channel here, also to a session that joins while the first one's
        broker subscription is still on its way."""
        subscribers = self._channels.get(channel)
        if subscribers is not None:
            if isinstance(subscribers, dict):
                subscribers[session] = None
            elif subscribers is not session:
                self._channels[channel] = {subscribers: None, session: None}
            pending = self._subscribing.get(channel)
            if pending is not None:
                await asyncio.shield(pending)
            return
        self._channels[channel] = session
        if not self._broker.waits:
            # Nothing can come between: no task to share with later joiners.
            await self._broker.subscribe(channel)
            return
        pending = asyncio.ensure_future(self._broker.subscribe(channel))
        self._subscribing[channel] = pending
        try:
            await asyncio.shield(pending)
        finally:
            if self._subscribing.get(channel) is pending:
                del self._subscribing[channel]

    async def remove(self, channel: str, session: Session) -> None:
        if self.discard(channel, session):
            await self._broker.unsubscribe(channel)

    def discard(self, channel: str, session: Session) -> bool:
        """Remove without telling the broker; True when the channel has no
        local subscriber left (the caller then unsubscribes the broker)."""
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return False
        if isinstance(subscribers, dict):
            subscribers.pop(session, None)
            if subscribers:
                return False
        elif subscribers is not session:
            return False
        del self._channels[channel]
        return True

    def broadcast(self, channel: str, publication: Publication) -> int:
        """Deliver to every local subscriber; returns how many there were."""
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return 0
        frame = protocol.encode_publication_push(channel, publication)
        if not isinstance(subscribers, dict):
            subscribers.deliver(channel, publication, frame)
            return 1
        for session in list(subscribers):
            session.deliver(channel, publication, frame)
        return len(subscribers)

    def broadcast_join_leave(self, channel: str, kind: str, info: ClientInfo) -> int:
        """Offer a join or leave event to every local subscriber (each decides
        whether it receives them); returns how many there were."""
        subscribers = self.subscribers(channel)
        if not subscribers:
            return 0
        frame = protocol.encode_join_leave_push(channel, kind, info)
        for session in subscribers:
            session.deliver_join_leave(channel, frame)
        return len(subscribers)

    def subscribers(self, channel: str) -> list[Session]:
        """The channel's local subscribers, in the order they joined."""
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return []
        if isinstance(subscribers, dict):
            return list(subscribers)
        return [subscribers]

    def channels(self) -> list[str]:
        return list(self._channels)

    @property
    def subscription_count(self) -> int:
        return sum(
            len(s) if isinstance(s, dict) else 1 for s in self._channels.values()
        )
