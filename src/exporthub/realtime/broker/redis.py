"""The Redis broker: channels and their history shared by every node.

Keys, all under a configurable prefix so that deployments (and test runs)
sharing one Redis do not meet:

``{prefix}.stream.{channel}``
    a Redis stream with the channel's history, entry ID = offset, capped at
    the channel's history size and expiring after its history TTL;
``{prefix}.meta.{channel}``
    a hash with the epoch (``e``) and the last offset (``s``), kept for the
    meta TTL after the last publication or read;
``{prefix}.pub.{channel}``
    the pub/sub channel that carries each publication to every node, as
    ``offset:epoch:time_ms:`` followed by the JSON payload;
``{prefix}.result.{token}``
    the outcome of one publish for a minute, so that a publish retried after
    a lost reply is not applied twice;
``{prefix}.presence.{channel}`` and ``{prefix}.presence-expiry.{channel}``
    a hash of the connections present (client id to their info) and when
    each entry expires. Every node renews its own entries; those of a node
    that died expire after the presence TTL.

Join and leave events travel on the channel's pub/sub channel too, as ``J``
or ``L`` followed by the client info, in order with its publications.

A publish is one Lua script: increment the offset, append to the stream,
refresh the expiries and PUBLISH, atomically, so offsets on the wire are
always in stream order.

Each node keeps one pub/sub connection and subscribes it to the channels
that have local subscribers. When that connection is lost the node
reconnects with backoff and subscribes again; before delivering anything
newer on a channel it reads from the stream what was published during the
gap and delivers that first. What the stream no longer holds (trimmed or
expired meanwhile) shows up to sessions as a gap in offsets, and they make
their clients reconnect and recover, which then tells them ``recovered:
false``.

Limitation: a publication made while Redis stays unreachable for longer
than the publish retry window is lost; the publisher gets the Redis error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporthub.realtime.broker import (
    DEFAULT_META_TTL,
    JOIN,
    LEAVE,
    Broker,
    HistoryOptions,
    HistoryResult,
    JoinLeaveHandler,
    PublicationHandler,
    StreamPosition,
)
from exporthub.realtime.protocol import ClientInfo, Publication

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "exporthub"
SOCKET_TIMEOUT = 5.0
"""Seconds a command may take before the connection counts as broken."""
SUBSCRIBE_TIMEOUT = 10.0
"""Seconds a new channel waits for Redis to confirm its subscription."""
PUBLISH_RETRY_FOR = 10.0
"""Seconds a publish keeps retrying while Redis cannot be reached."""
RETRY_MIN_DELAY = 0.1
RETRY_MAX_DELAY = 2.0
RECONNECT_MIN_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0
PUBSUB_PING_INTERVAL = 5.0
"""Seconds of silence on the pub/sub connection before it is pinged; no
answer within as long again and it counts as lost."""
RESULT_TTL_MS = 60_000
RESP2 = 2
EPOCH_BYTES = 4
TOKEN_BYTES = 8
SUBSCRIBE_BATCH = 512
"""Channels per SUBSCRIBE command when subscribing everything again."""
PRESENCE_TTL = 60.0
"""Seconds a presence entry lives unless its node renews it."""
PRESENCE_RENEWALS = 3
"""Renewals per presence TTL: an entry survives two missed ones."""
JOIN_MARK = b"J"
LEAVE_MARK = b"L"
_JOIN_LEAVE = {JOIN_MARK: JOIN, LEAVE_MARK: LEAVE}

# KEYS: stream, meta, result. ARGV: data, size, ttl ms, meta ttl ms,
# epoch to start with, pub/sub channel, time ms, result ttl ms.
_PUBLISH = """
local done = redis.call('hmget', KEYS[3], 'o', 'e')
if done[1] then
  return {tonumber(done[1]), done[2]}
end
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('hset', KEYS[2], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[2], 's', 1)
if redis.call('pttl', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('pexpire', KEYS[2], ARGV[4])
end
if offset == 1 then
  -- A new epoch: whatever the stream still holds belongs to an old one.
  redis.call('del', KEYS[1])
end
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1],
  't', ARGV[7])
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('publish', ARGV[6],
  offset .. ':' .. epoch .. ':' .. ARGV[7] .. ':' .. ARGV[1])
redis.call('hset', KEYS[3], 'o', offset, 'e', epoch)
redis.call('pexpire', KEYS[3], ARGV[8])
return {offset, epoch}
"""

# KEYS: presence hash, expiry set. ARGV: now ms.
_PRESENCE = """
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(expired) do
  redis.call('hdel', KEYS[1], client)
end
redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1])
return redis.call('hgetall', KEYS[1])
"""

# KEYS: stream, meta. ARGV: first offset wanted ('-' for the oldest),
# limit (-1 all, 0 none), reverse ('1'), meta ttl ms, epoch to start with.
_HISTORY = """
local meta = redis.call('hmget', KEYS[2], 'e', 's')
local epoch = meta[1]
local top = tonumber(meta[2]) or 0
if not epoch then
  epoch = ARGV[5]
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('del', KEYS[1])
end
if redis.call('pttl', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('pexpire', KEYS[2], ARGV[4])
end
local limit = tonumber(ARGV[2])
if limit == 0 then
  return {top, epoch, {}}
end
local entries
if ARGV[3] == '1' then
  if limit > 0 then
    entries = redis.call('xrevrange', KEYS[1], '+', ARGV[1], 'COUNT', limit)
  else
    entries = redis.call('xrevrange', KEYS[1], '+', ARGV[1])
  end
elseif limit > 0 then
  entries = redis.call('xrange', KEYS[1], ARGV[1], '+', 'COUNT', limit)
else
  entries = redis.call('xrange', KEYS[1], ARGV[1], '+')
end
return {top, epoch, entries}
"""


class BrokerUnavailable(RedisConnectionError):
    """The pub/sub connection is down, or a subscription was not confirmed."""


@dataclass(slots=True)
class _Channel:
    """A channel this node receives."""

    refs: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    live: bool = False
    """Confirmed at least once: a reconnect must catch up on it."""
    catch_up: bool = False


class RedisBroker(Broker):
    """Publications and history in Redis, shared by every node.

    Args:
        url: ``redis://host:port/db``, ``rediss://...`` or ``unix://...``.
        prefix: start of every key and pub/sub channel name.
        meta_ttl: seconds a channel's epoch and offset are kept after its
            last publication or read.
        publish_retry_for: seconds a publish keeps retrying while Redis
            cannot be reached.
        presence_ttl: seconds a presence entry outlives its node.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        meta_ttl: float = DEFAULT_META_TTL,
        publish_retry_for: float = PUBLISH_RETRY_FOR,
        presence_ttl: float = PRESENCE_TTL,
    ) -> None:
        self._pool = ConnectionPool.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # Retries are done here, where it is known which ones are safe.
            retry=Retry(NoBackoff(), 0),
            # Pub/sub replies as plain arrays, read in order on one socket.
            protocol=RESP2,
        )
        self._redis = Redis(connection_pool=self._pool)
        self._publish_script = self._redis.register_script(_PUBLISH)
        self._history_script = self._redis.register_script(_HISTORY)
        self._presence_script = self._redis.register_script(_PRESENCE)
        self._prefix = prefix
        self._pub_prefix = f"{prefix}.pub.".encode()
        self._meta_ttl_ms = _ms(meta_ttl)
        self._publish_retry_for = publish_retry_for
        self._presence_ttl = presence_ttl
        self._present: dict[str, dict[str, ClientInfo]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._join_leave_handler: JoinLeaveHandler | None = None
        self._handler: PublicationHandler | None = None
        self._channels: dict[str, _Channel] = {}
        self._seen: dict[str, StreamPosition] = {}
        self._awaiting: Counter[bytes] = Counter()
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------

    async def start(self, handler: PublicationHandler) -> None:
        """Connect to Redis and start receiving publications.

        Raises:
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        await self._redis.ping()
        self._handler = handler
        self._closing = False
        await self._connect()
        self._reader = asyncio.ensure_future(self._run())
        self._renewer = asyncio.ensure_future(self._renew_presence())
        logger.info("Redis broker started (prefix %r)", self._prefix)

    async def close(self) -> None:
        self._closing = True
        self._handler = None
        self._join_leave_handler = None
        for task in (self._reader, self._renewer):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._reader = self._renewer = None
        await self._drop_connection()
        await self._redis.aclose()
        await self._pool.disconnect()

    async def ping(self) -> None:
        """Raise when Redis does not answer or publications cannot arrive."""
        await self._redis.ping()
        if self._conn is None:
            raise BrokerUnavailable("the pub/sub connection is down")

    # -- publishing and history ---------------------------------------------

    async def publish(
        self, channel: str, data: bytes, history: HistoryOptions
    ) -> StreamPosition:
        time_ms = int(time.time() * 1000)
        if not history.enabled:
            payload = b"0::%d:" % time_ms + data
            key = self._pub(channel)
            await self._retrying(lambda: self._redis.publish(key, payload))
            return StreamPosition(0, "")
        keys = [
            self._key("stream", channel),
            self._key("meta", channel),
            self._key("result", secrets.token_hex(TOKEN_BYTES)),
        ]
        args: list[bytes | str | int] = [
            data,
            history.size,
            _ms(history.ttl),
            max(self._meta_ttl_ms, _ms(history.ttl)),
            secrets.token_hex(EPOCH_BYTES),
            self._pub(channel),
            time_ms,
            RESULT_TTL_MS,
        ]
        offset, epoch = await self._retrying(
            lambda: self._publish_script(keys=keys, args=args)
        )
        return StreamPosition(int(offset), _text(epoch))

    async def history(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = -1,
        reverse: bool = False,
    ) -> HistoryResult:
        first = "-" if since is None else str(since.offset + 1)
        top, epoch, entries = await self._history_script(
            keys=[self._key("stream", channel), self._key("meta", channel)],
            args=[
                first,
                limit,
                "1" if reverse else "0",
                self._meta_ttl_ms,
                secrets.token_hex(EPOCH_BYTES),
            ],
        )
        epoch = _text(epoch)
        publications = [_entry(entry, epoch) for entry in entries]
        return HistoryResult(publications, StreamPosition(int(top), epoch))

    async def remove_history(self, channel: str) -> None:
        await self._redis.delete(self._key("stream", channel))

    # -- presence and join/leave --------------------------------------------

    def set_join_leave_handler(self, handler: JoinLeaveHandler) -> None:
        self._join_leave_handler = handler

    async def publish_join_leave(
        self, channel: str, kind: str, info: ClientInfo
    ) -> None:
        mark = JOIN_MARK if kind == JOIN else LEAVE_MARK
        payload = mark + _info_json(info)
        key = self._pub(channel)
        await self._retrying(lambda: self._redis.publish(key, payload))

    async def add_presence(self, channel: str, info: ClientInfo) -> None:
        self._present.setdefault(channel, {})[info.client] = info
        await self._write_presence(channel, [info])

    async def remove_presence(self, channel: str, client: str) -> None:
        mine = self._present.get(channel)
        if mine is not None:
            mine.pop(client, None)
            if not mine:
                del self._present[channel]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("presence", channel), client)
            pipe.zrem(self._key("presence-expiry", channel), client)
            await pipe.execute()

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        pairs = await self._presence_script(
            keys=[
                self._key("presence", channel),
                self._key("presence-expiry", channel),
            ],
            args=[int(time.time() * 1000)],
        )
        present = {}
        for client, raw in zip(pairs[::2], pairs[1::2], strict=True):
            present[_text(client)] = _info(raw)
        return present

    async def _write_presence(self, channel: str, infos: list[ClientInfo]) -> None:
        ttl_ms = _ms(self._presence_ttl)
        expires = int(time.time() * 1000) + ttl_ms
        hash_key = self._key("presence", channel)
        expiry_key = self._key("presence-expiry", channel)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(hash_key, mapping={i.client: _info_json(i) for i in infos})
            pipe.zadd(expiry_key, {i.client: expires for i in infos})
            pipe.pexpire(hash_key, ttl_ms)
            pipe.pexpire(expiry_key, ttl_ms)
            await pipe.execute()

    async def _renew_presence(self) -> None:
        while True:
            await asyncio.sleep(self._presence_ttl / PRESENCE_RENEWALS)
            for channel, mine in list(self._present.items()):
                try:
                    await self._write_presence(channel, list(mine.values()))
                except (RedisError, OSError) as exc:
                    logger.warning("renewing presence in %s failed: %s", channel, exc)

    # -- subscriptions -----------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Receive ``channel`` on this node; returns once Redis confirmed it.

        Raises:
            BrokerUnavailable: no confirmation within the subscribe timeout.
        """
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(refs=1)
            await self._send_subscribe([channel])
        else:
            state.refs += 1
        try:
            await asyncio.wait_for(state.ready.wait(), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            message = f"subscription to {channel} not confirmed"
            raise BrokerUnavailable(message) from None

    async def unsubscribe(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is None:
            return
        state.refs -= 1
        if state.refs > 0:
            return
        del self._channels[channel]
        self._seen.pop(channel, None)
        conn = self._conn
        if conn is not None:
            try:
                await conn.send_command("UNSUBSCRIBE", self._pub(channel))
            except (RedisError, OSError):
                pass  # The reader notices the broken connection.

    async def _send_subscribe(self, channels: list[str]) -> None:
        conn = self._conn
        if conn is None:
            return  # Subscribed when the connection is back.
        keys = [self._pub(channel) for channel in channels]
        self._awaiting.update(keys)
        try:
            await conn.send_command("SUBSCRIBE", *keys)
        except (RedisError, OSError):
            pass  # The reader notices the broken connection.

    # -- the pub/sub connection --------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                if self._conn is None:
                    await self._connect()
                    logger.info("Redis pub/sub connection restored")
                failures = 0
                await self._read()
            except (RedisError, OSError) as exc:
                await self._drop_connection()
                if self._closing:
                    return
                delay = min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2**failures)
                delay *= 1 + random.random() / 4  # Nodes do not reconnect in step.
                failures += 1
                logger.warning(
                    "Redis pub/sub connection lost (%s); reconnecting in %.1fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _connect(self) -> None:
        kwargs = dict(self._pool.connection_kwargs)
        kwargs["socket_timeout"] = None  # Reads wait for publications.
        conn: AbstractConnection = self._pool.connection_class(**kwargs)
        await conn.connect()
        # No await between taking the connection and listing the channels:
        # a channel added afterwards sends its own SUBSCRIBE.
        self._conn = conn
        self._awaiting.clear()
        channels = list(self._channels)
        for state in self._channels.values():
            state.ready.clear()
            state.catch_up = state.live
        for start in range(0, len(channels), SUBSCRIBE_BATCH):
            await self._send_subscribe(channels[start : start + SUBSCRIBE_BATCH])

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except (RedisError, OSError):
                pass

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        pinged = False
        while True:
            response = await conn.read_response(timeout=PUBSUB_PING_INTERVAL)
            if response is None:
                if pinged:
                    raise RedisTimeoutError("no answer to PING on pub/sub")
                await conn.send_command("PING")
                pinged = True
                continue
            pinged = False
            kind = response[0]
            if kind == b"message":
                self._on_message(response[1], response[2])
            elif kind == b"subscribe":
                await self._on_subscribed(response[1])

    async def _on_subscribed(self, key: bytes) -> None:
        self._awaiting[key] -= 1
        if self._awaiting[key] > 0:
            return  # A later SUBSCRIBE of the same channel is on its way.
        del self._awaiting[key]
        channel = self._channel_of(key)
        state = self._channels.get(channel)
        if state is None:
            return
        if state.catch_up:
            # Done before reading any further message, so what was missed
            # reaches the handler before anything newer.
            await self._catch_up(channel)
            state.catch_up = False
        state.live = True
        state.ready.set()

    async def _catch_up(self, channel: str) -> None:
        result = await self.history(channel, since=self._seen.get(channel))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "caught up on %d publications of %s",
                len(result.publications),
                channel,
            )
        for publication in result.publications:
            self._deliver(channel, publication)

    def _on_message(self, key: bytes, payload: bytes) -> None:
        kind = _JOIN_LEAVE.get(payload[:1])
        if kind is not None:
            handler = self._join_leave_handler
            if handler is not None:
                handler(self._channel_of(key), kind, _info(payload[1:]))
            return
        offset, _, rest = payload.partition(b":")
        epoch, _, rest = rest.partition(b":")
        time_ms, _, data = rest.partition(b":")
        publication = Publication(data, int(offset), int(time_ms), epoch.decode())
        self._deliver(self._channel_of(key), publication)

    def _deliver(self, channel: str, publication: Publication) -> None:
        if publication.offset and channel in self._channels:
            seen = self._seen.get(channel)
            if (
                seen is not None
                and seen.epoch == publication.epoch
                and publication.offset <= seen.offset
            ):
                return  # Already delivered by a catch-up.
            self._seen[channel] = StreamPosition(publication.offset, publication.epoch)
        handler = self._handler
        if handler is None:
            return
        try:
            handler(channel, publication)
        except Exception:
            logger.exception("delivering a publication of %s failed", channel)

    # -- helpers -----------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}.{kind}.{name}"

    def _pub(self, channel: str) -> bytes:
        return self._pub_prefix + channel.encode()

    def _channel_of(self, key: bytes) -> str:
        return key[len(self._pub_prefix) :].decode()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._publish_retry_for
        delay = RETRY_MIN_DELAY
        while True:
            try:
                return await call()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("publishing to Redis failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info_json(info: ClientInfo) -> bytes:
    wire: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.chan_info is not None:
        wire["chan_info"] = orjson.Fragment(info.chan_info)
    return orjson.dumps(wire)


def _info(raw: bytes) -> ClientInfo:
    wire = orjson.loads(raw)
    chan_info = wire.get("chan_info")
    return ClientInfo(
        wire["user"],
        wire["client"],
        None if chan_info is None else orjson.dumps(chan_info),
    )


def _entry(entry: Any, epoch: str) -> Publication:
    """A stream entry ``[id, [field, value, ...]]`` as a publication."""
    entry_id, fields = entry
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    offset = int(entry_id.split(b"-", 1)[0])
    return Publication(values[b"d"], offset, int(values.get(b"t", 0)), epoch)
