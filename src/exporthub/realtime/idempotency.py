"""Results of keyed operations, remembered so that a retry does not redo them.

A publish retried with the same idempotency key (after a timeout, say) must
return the first attempt's result and not be delivered again. A retry that
arrives while the first attempt is still running waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DEFAULT_TTL = 300.0
"""How long a result is remembered, in seconds (as Centrifugo: five minutes)."""
DEFAULT_MAX_KEYS = 100_000
"""Keys kept at most; the oldest are forgotten first past this."""


class IdempotentResults(Generic[T]):
    """Runs an operation once per key within ``ttl`` seconds.

    Only successful results are remembered: a failed attempt may be retried.
    The memory is per process, so a retry reaching another node is run again.

    Args:
        ttl: seconds a result is remembered.
        max_keys: keys kept at most, oldest forgotten first.
    """

    def __init__(
        self, ttl: float = DEFAULT_TTL, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        # Insertion order is expiry order, since every entry lives ``ttl``.
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def run(self, key: Hashable, operation: Callable[[], Awaitable[T]]) -> T:
        """The result of ``operation``, run now or remembered for ``key``."""
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get(key)
        if entry is not None:
            return await asyncio.shield(entry[1])
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now + self._ttl, future)
        while len(self._entries) > self._max_keys:
            del self._entries[next(iter(self._entries))]
        try:
            result = await operation()
        except BaseException as exc:
            if self._entries.get(key, (0.0, None))[1] is future:
                del self._entries[key]
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                # Retrieved here so that a failure nobody else awaited is not
                # reported again as "exception was never retrieved".
                future.exception()
            raise
        future.set_result(result)
        return result

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            key = next(iter(self._entries))
            expires_at, future = self._entries[key]
            if expires_at > now or not future.done():
                return
            del self._entries[key]
