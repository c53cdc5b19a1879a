"""Remembered results of keyed operations (idempotent publish)."""

from __future__ import annotations

import asyncio

import pytest

from exporthub.realtime.idempotency import IdempotentResults


class Counter:
    """An operation that counts its runs and returns the count."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> int:
        self.runs += 1
        await self.release.wait()
        return self.runs


async def test_second_run_with_the_same_key_returns_the_first_result() -> None:
    results: IdempotentResults[int] = IdempotentResults()
    operation = Counter()
    first = await results.run("k", operation)
    second = await results.run("k", operation)
    assert (first, second, operation.runs) == (1, 1, 1)


async def test_other_keys_run_again() -> None:
    results: IdempotentResults[int] = IdempotentResults()
    operation = Counter()
    await results.run("a", operation)
    assert await results.run("b", operation) == 2


async def test_run_while_the_first_is_in_flight_waits_for_it() -> None:
    results: IdempotentResults[int] = IdempotentResults()
    operation = Counter()
    operation.release.clear()
    first = asyncio.ensure_future(results.run("k", operation))
    second = asyncio.ensure_future(results.run("k", operation))
    await asyncio.sleep(0)
    operation.release.set()
    assert (await first, await second, operation.runs) == (1, 1, 1)


async def test_failure_is_not_remembered() -> None:
    results: IdempotentResults[int] = IdempotentResults()
    operation = Counter()

    async def failing() -> int:
        raise RuntimeError("broker down")

    with pytest.raises(RuntimeError):
        await results.run("k", failing)
    assert await results.run("k", operation) == 1


async def test_result_is_forgotten_after_its_ttl() -> None:
    results: IdempotentResults[int] = IdempotentResults(ttl=0.0)
    operation = Counter()
    await results.run("k", operation)
    assert await results.run("k", operation) == 2


async def test_oldest_key_is_forgotten_past_max_keys() -> None:
    results: IdempotentResults[int] = IdempotentResults(max_keys=2)
    operation = Counter()
    for key in ("a", "b", "c"):
        await results.run(key, operation)
    assert (len(results), await results.run("a", operation)) == (2, 4)
