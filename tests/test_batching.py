"""The coalescer that lets connections arriving together share queries."""

from __future__ import annotations

import asyncio

import pytest

from exporthub.batching import Coalescer


class Recorder:
    """A ``load`` that records its batches and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.fail_on: str | None = None

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.batches.append(list(keys))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on in keys:
            raise RuntimeError(f"cannot load {self.fail_on}")
        return {key: key.upper() for key in keys if not key.startswith("missing")}


async def test_callers_arriving_together_share_one_load() -> None:
    load = Recorder()
    coalescer = Coalescer(load)
    values = await asyncio.gather(*(coalescer.get(k) for k in ("a", "b", "a", "c")))
    assert values == ["A", "B", "A", "C"]
    assert load.batches == [["a", "b", "c"]]
    assert coalescer.batches == 1


async def test_a_key_the_load_leaves_out_is_answered_with_none() -> None:
    coalescer = Coalescer(Recorder())
    assert await asyncio.gather(coalescer.get("a"), coalescer.get("missing")) == [
        "A",
        None,
    ]


async def test_keys_asked_for_during_a_load_go_in_the_next_batch() -> None:
    load = Recorder()
    load.gate = asyncio.Event()
    coalescer = Coalescer(load)
    first = asyncio.ensure_future(coalescer.get("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert load.batches == [["a"]]
    later = [asyncio.ensure_future(coalescer.get(k)) for k in ("b", "c", "d")]
    await asyncio.sleep(0)
    load.gate.set()
    assert await asyncio.gather(first, *later) == ["A", "B", "C", "D"]
    assert load.batches == [["a"], ["b", "c", "d"]]


async def test_batches_are_cut_at_max_batch() -> None:
    load = Recorder()
    coalescer = Coalescer(load, max_batch=2)
    values = await asyncio.gather(*(coalescer.get(k) for k in "abcde"))
    assert values == ["A", "B", "C", "D", "E"]
    assert load.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_failed_load_fails_its_batch_and_not_the_next() -> None:
    load = Recorder()
    load.fail_on = "b"
    coalescer = Coalescer(load)
    results = await asyncio.gather(
        coalescer.get("a"), coalescer.get("b"), return_exceptions=True
    )
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert str(results[0]) == "cannot load b"
    assert await coalescer.get("c") == "C"
    assert load.batches == [["a", "b"], ["c"]]


async def test_a_caller_that_goes_away_leaves_the_others_their_answer() -> None:
    load = Recorder()
    load.gate = asyncio.Event()
    coalescer = Coalescer(load)
    leaving = asyncio.ensure_future(coalescer.get("a"))
    staying = asyncio.ensure_future(coalescer.get("a"))
    await asyncio.sleep(0)
    leaving.cancel()
    load.gate.set()
    assert await staying == "A"
    assert leaving.cancelled()


async def test_stopping_the_loader_cancels_everyone_waiting() -> None:
    load = Recorder()
    load.gate = asyncio.Event()
    coalescer = Coalescer(load)
    waiting = [asyncio.ensure_future(coalescer.get(k)) for k in ("a", "b")]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(coalescer.get("c"))
    await asyncio.sleep(0)
    drainer = coalescer._drainer
    assert drainer is not None
    drainer.cancel()
    results = await asyncio.gather(*waiting, queued, return_exceptions=True)
    assert [type(r) for r in results] == [asyncio.CancelledError] * 3
    # And it starts again for the next caller.
    load.gate.set()
    assert await coalescer.get("d") == "D"


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        Coalescer(Recorder(), max_batch=0)


async def test_a_batch_following_another_lingers_for_more_keys() -> None:
    load = Recorder()
    load.gate = asyncio.Event()
    coalescer = Coalescer(load, linger=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.ensure_future(coalescer.get("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert load.batches == [["a"]]  # a lone caller does not wait
    second = asyncio.ensure_future(coalescer.get("b"))
    await asyncio.sleep(0)
    load.gate.set()
    assert await first == "A"
    await asyncio.sleep(0.05)
    late = asyncio.ensure_future(coalescer.get("c"))  # within the linger
    assert await asyncio.gather(second, late) == ["B", "C"]
    assert load.batches == [["a"], ["b", "c"]]
    assert loop.time() - started >= 0.2


async def test_a_full_batch_does_not_linger() -> None:
    load = Recorder()
    load.gate = asyncio.Event()
    coalescer = Coalescer(load, max_batch=2, linger=30)
    first = asyncio.ensure_future(coalescer.get("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(coalescer.get(k)) for k in ("b", "c")]
    await asyncio.sleep(0)
    load.gate.set()
    values = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert values == ["A", "B", "C"]
    assert load.batches == [["a"], ["b", "c"]]


def test_a_negative_linger_is_refused() -> None:
    with pytest.raises(ValueError, match="linger must not be negative"):
        Coalescer(Recorder(), linger=-1)


async def test_a_caller_after_a_quiet_spell_does_not_linger() -> None:
    load = Recorder()
    coalescer = Coalescer(load, linger=30)
    assert await coalescer.get("a") == "A"
    await asyncio.sleep(0)
    assert await asyncio.wait_for(coalescer.get("b"), 5) == "B"
    assert load.batches == [["a"], ["b"]]


async def test_callers_by_reply_share_the_batch_of_callers_that_await() -> None:
    load = Recorder()
    coalescer = Coalescer(load)
    replies: list[tuple[str | None, BaseException | None]] = []
    coalescer.call("b", lambda value, error: replies.append((value, error)))
    coalescer.call("missing", lambda value, error: replies.append((value, error)))
    assert await coalescer.get("a") == "A"
    assert replies == [("B", None), (None, None)]
    assert load.batches == [["b", "missing", "a"]]


async def test_a_failed_load_replies_with_its_exception() -> None:
    load = Recorder()
    load.fail_on = "a"
    coalescer = Coalescer(load)
    replies: list[tuple[str | None, BaseException | None]] = []
    coalescer.call("a", lambda value, error: replies.append((value, error)))
    with pytest.raises(RuntimeError, match="cannot load a"):
        await coalescer.get("a")
    [(value, error)] = replies
    assert value is None
    assert isinstance(error, RuntimeError)
    assert str(error) == "cannot load a"


async def test_a_reply_that_raises_leaves_the_others_their_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    coalescer = Coalescer(Recorder())
    replies: list[str | None] = []

    def broken(value: str | None, error: BaseException | None) -> None:
        raise ValueError("reply broke")

    coalescer.call("a", broken)
    coalescer.call("a", lambda value, error: replies.append(value))
    assert await coalescer.get("b") == "B"
    assert replies == ["A"]
    assert "a batched lookup's reply failed" in caplog.text
    assert "reply broke" in caplog.text


async def test_a_reply_may_ask_again_and_lands_in_the_next_batch() -> None:
    load = Recorder()
    coalescer = Coalescer(load)
    replies: list[str | None] = []

    def again(value: str | None, error: BaseException | None) -> None:
        replies.append(value)
        if len(replies) == 1:
            coalescer.call("a", again)

    coalescer.call("a", again)
    drainer = coalescer._drainer
    assert drainer is not None
    await asyncio.wait_for(drainer, 5)
    assert replies == ["A", "A"]
    assert load.batches == [["a"], ["a"]]
