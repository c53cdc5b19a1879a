"""The in-process broker: history in a bounded deque per channel.

Limitation: history lives in this process only; it is lost on restart (the
epoch changes, so reconnecting clients are told recovery is impossible) and
is not shared with other nodes. Use the Redis broker for several nodes.
Presence lives here too, per channel, and join/leave events are delivered
synchronously like publications.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass

from exporthub.realtime.broker import (
    DEFAULT_META_TTL,
    Broker,
    HistoryOptions,
    HistoryResult,
    JoinLeaveHandler,
    PresenceStats,
    PublicationHandler,
    StreamPosition,
)
from exporthub.realtime.protocol import ClientInfo, Publication

SWEEP_INTERVAL = 60.0
"""Seconds between sweeps of streams nobody published to or read for
longer than the meta TTL."""


@dataclass(slots=True)
class _Stream:
    epoch: str
    offset: int = 0
    items: deque[tuple[float, Publication]] | None = None
    """Publications with their expiry; None until the first one (every
    connection positions itself in five streams nobody may publish to)."""
    forget_at: float = 0.0


def _new_epoch() -> str:
    # Not a secret: it only has to differ from what the channel had before.
    # Every connection starts streams for its personal channels, and
    # secrets.token_hex would be a system call for each.
    return f"{random.getrandbits(32):08x}"


class MemoryBroker(Broker):
    """Single-node broker; every publication is delivered synchronously.

    Args:
        meta_ttl: seconds a channel's epoch and offset are kept after its
            last publication or read. Publications themselves expire after
            their channel's history TTL; the position outlives them, so a
            quiet channel goes on with the same epoch and the next offset.
    """

    waits = False

    def __init__(self, *, meta_ttl: float = DEFAULT_META_TTL) -> None:
        self._handler: PublicationHandler | None = None
        self._join_leave_handler: JoinLeaveHandler | None = None
        self._streams: dict[str, _Stream] = {}
        self._unpublished: dict[str, tuple[str, float]] = {}
        """Channels read but not published to since they were last
        forgotten: their epoch and when to forget it. Every connection reads
        five of them, and a tuple of a string and a float, unlike a
        :class:`_Stream`, is soon no longer walked by the garbage collector."""
        self._presence: dict[str, dict[str, ClientInfo]] = {}
        self._meta_ttl = meta_ttl
        self._next_sweep = 0.0

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._join_leave_handler = None

    async def publish(
        self, channel: str, data: bytes, history: HistoryOptions
    ) -> StreamPosition:
        now = time.time()
        time_ms = int(now * 1000)
        if not history.enabled:
            publication = Publication(data, 0, time_ms)
            position = StreamPosition(0, "")
        else:
            stream = self._stream(channel, now, keep=max(self._meta_ttl, history.ttl))
            stream.offset += 1
            publication = Publication(data, stream.offset, time_ms, stream.epoch)
            items = stream.items
            if items is None:
                items = stream.items = deque()
            items.append((now + history.ttl, publication))
            while len(items) > history.size:
                items.popleft()
            position = StreamPosition(stream.offset, stream.epoch)
        if self._handler is not None:
            self._handler(channel, publication)
        return position

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = -1,
        reverse: bool = False,
    ) -> HistoryResult:
        now = time.time()
        stream = self._streams.get(channel)
        if stream is None or stream.forget_at < now:
            epoch = self._unpublished_epoch(channel, now)
            return HistoryResult([], StreamPosition(0, epoch))
        stream.forget_at = max(stream.forget_at, now + self._meta_ttl)
        kept = stream.items
        while kept and kept[0][0] < now:
            kept.popleft()
        position = StreamPosition(stream.offset, stream.epoch)
        if limit == 0 or not kept:
            return HistoryResult([], position)
        items = [pub for _, pub in kept]
        if since is not None:
            items = [p for p in items if p.offset > since.offset]
        if reverse:
            items.reverse()
        if limit > 0:
            items = items[:limit]
        return HistoryResult(items, position)

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None and stream.items is not None:
            stream.items.clear()

    # -- presence and join/leave --------------------------------------------

    def set_join_leave_handler(self, handler: JoinLeaveHandler) -> None:
        self._join_leave_handler = handler

    async def publish_join_leave(
        self, channel: str, kind: str, info: ClientInfo
    ) -> None:
        if self._join_leave_handler is not None:
            self._join_leave_handler(channel, kind, info)

    async def add_presence(self, channel: str, info: ClientInfo) -> None:
        self._presence.setdefault(channel, {})[info.client] = info

    async def remove_presence(self, channel: str, client: str) -> None:
        clients = self._presence.get(channel)
        if clients is None:
            return
        clients.pop(client, None)
        if not clients:
            del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._presence.get(channel, {}))

    async def presence_stats(self, channel: str) -> PresenceStats:
        clients = self._presence.get(channel, {})
        users = {info.user for info in clients.values()}
        return PresenceStats(num_clients=len(clients), num_users=len(users))

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        for name in [n for n, s in self._streams.items() if s.forget_at < now]:
            del self._streams[name]
        unpublished = self._unpublished
        for name in [n for n, (_, at) in unpublished.items() if at < now]:
            del unpublished[name]

    def _unpublished_epoch(self, channel: str, now: float) -> str:
        """The epoch of a channel with nothing published since it was last
        forgotten (its offset is 0), kept for the meta TTL from now."""
        self._sweep(now)
        # A forgotten stream starts a new epoch, like an expired Redis key:
        # offsets from before it mean nothing any more.
        self._streams.pop(channel, None)
        known = self._unpublished.get(channel)
        epoch = known[0] if known is not None and known[1] >= now else _new_epoch()
        self._unpublished[channel] = (epoch, now + self._meta_ttl)
        return epoch

    def _stream(self, channel: str, now: float, *, keep: float) -> _Stream:
        """The channel's stream, kept for at least ``keep`` more seconds."""
        self._sweep(now)
        stream = self._streams.get(channel)
        if stream is None or stream.forget_at < now:
            # The epoch read before the first publication, if still known.
            known = self._unpublished.pop(channel, None)
            if known is not None and known[1] >= now:
                stream = _Stream(epoch=known[0], forget_at=known[1])
            else:
                stream = _Stream(epoch=_new_epoch())
            self._streams[channel] = stream
        stream.forget_at = max(stream.forget_at, now + keep)
        return stream
