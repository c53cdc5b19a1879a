"""Run many lookups of the same kind as one.

When thousands of clients connect at once, each wants the same kind of
answer from the database (its dashboard snapshot). Asking once per client
costs a round trip and a query each; a :class:`Coalescer` gathers the keys
asked for while the previous batch was loading and loads them together, so
the number of queries follows the number of batches, not of callers. A lone
caller waits for nothing but its own batch of one.

Under sustained demand the batches would otherwise follow each other as fast
as they load, each one small: with a database driver that works in a thread
of its own (aiosqlite), every batch is several hand-offs between that
thread and the event loop, and measured in a connect storm those hand-offs
cost more than the queries. ``linger`` makes a batch that follows another
one wait that long for company first (never a lone caller's batch).

A caller either awaits :meth:`Coalescer.get`, or hands :meth:`Coalescer.call`
a function to call with the value: then nothing of the caller stays
suspended while the batch loads, which in a connect storm is most of what a
lookup costs (a task, its chain of coroutines, a future and its wake-up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from itertools import islice
from typing import Generic, TypeAlias, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Load = Callable[[list[K]], Awaitable[Mapping[K, V]]]
Reply = Callable[[V | None, BaseException | None], None]
"""Called with a key's value (None if not found) and None, or with None and
the exception its batch failed with."""
Waiter: TypeAlias = "asyncio.Future[V | None] | Reply[V]"

logger = logging.getLogger(__name__)


class Coalescer(Generic[K, V]):
    """Batches :meth:`get` calls into calls of ``load``.

    Args:
        load: takes distinct keys, returns the value of each key found; a key
            it leaves out is answered with None. If it raises, every caller
            of that batch gets the exception.
        max_batch: the most keys passed to one ``load`` call.
        linger: seconds a batch that directly follows another one waits
            for more keys, unless ``max_batch`` keys already wait.
    """

    def __init__(
        self, load: Load[K, V], *, max_batch: int = 500, linger: float = 0.0
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger < 0:
            raise ValueError("linger must not be negative")
        self._load = load
        self._max_batch = max_batch
        self._linger = linger
        self._waiting: dict[K, list[Waiter[V]]] = {}
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0
        """How many times ``load`` has been called."""

    async def get(self, key: K) -> V | None:
        """The value of ``key``, loaded with whatever else is asked for now."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._wait(key, future)
        return await future

    def call(self, key: K, reply: Reply[V]) -> None:
        """Load ``key`` with whatever else is asked for now, and call
        ``reply(value, None)`` (or ``reply(None, exc)``) from the batch."""
        self._wait(key, reply)

    def _wait(self, key: K, waiter: Waiter[V]) -> None:
        self._waiting.setdefault(key, []).append(waiter)
        if self._drainer is None:
            # Started on the next turn of the loop, so callers arriving in
            # this one share the first batch.
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        batch: dict[K, list[Waiter[V]]] = {}
        followed = False
        try:
            while self._waiting:
                if followed and self._linger and len(self._waiting) < self._max_batch:
                    await asyncio.sleep(self._linger)
                followed = True
                keys = list(islice(self._waiting, self._max_batch))
                batch = {key: self._waiting.pop(key) for key in keys}
                self.batches += 1
                try:
                    found = await self._load(keys)
                except Exception as exc:  # every caller of the batch gets it
                    for waiters in batch.values():
                        _settle(waiters, error=exc)
                else:
                    for key, waiters in batch.items():
                        _settle(waiters, value=found.get(key))
                batch = {}
        except BaseException:
            # Cancelled (the server is stopping): nobody is left waiting.
            for waiters in (*batch.values(), *self._waiting.values()):
                for waiter in waiters:
                    if isinstance(waiter, asyncio.Future):
                        waiter.cancel()
            self._waiting.clear()
            raise
        finally:
            self._drainer = None


def _settle(
    waiters: list[Waiter[V]],
    *,
    value: V | None = None,
    error: Exception | None = None,
) -> None:
    for waiter in waiters:
        if not isinstance(waiter, asyncio.Future):
            try:
                waiter(value, error)
            except Exception:
                # One caller's failure must not keep the rest waiting.
                logger.exception("a batched lookup's reply failed")
        elif waiter.done():  # its caller went away
            continue
        elif error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(value)
