"""The hub's map of channels to local subscribers: one subscriber, many,
and the way between them."""

from __future__ import annotations

from typing import Any

from exporthub.realtime.broker.memory import MemoryBroker
from exporthub.realtime.hub import Hub
from exporthub.realtime.protocol import ClientInfo, Publication


class Listener:
    """Stands in for a session: records what the hub hands it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[tuple[str, Any]] = []

    def deliver(self, channel: str, publication: Publication, frame: bytes) -> None:
        self.got.append((channel, publication.data))

    def deliver_join_leave(self, channel: str, frame: bytes) -> None:
        self.got.append((channel, frame))

    def __repr__(self) -> str:
        return self.name


def hub() -> Hub:
    return Hub(MemoryBroker())


async def test_one_subscriber_gets_the_channel_alone() -> None:
    h, a = hub(), Listener("a")
    await h.add("exports:u1", a)  # type: ignore[arg-type]
    assert h.subscribers("exports:u1") == [a]
    assert h.broadcast("exports:u1", Publication(b'{"n":1}')) == 1
    assert a.got == [("exports:u1", b'{"n":1}')]
    assert (h.channels(), h.subscription_count) == (["exports:u1"], 1)


async def test_a_second_subscriber_joins_the_first_in_order() -> None:
    h, a, b = hub(), Listener("a"), Listener("b")
    await h.add("exports:u1", a)  # type: ignore[arg-type]
    await h.add("exports:u1", a)  # type: ignore[arg-type]  # twice is once
    assert h.subscribers("exports:u1") == [a]
    await h.add("exports:u1", b)  # type: ignore[arg-type]
    assert h.subscribers("exports:u1") == [a, b]
    assert h.broadcast("exports:u1", Publication(b"1")) == 2
    assert a.got == b.got == [("exports:u1", b"1")]
    assert h.subscription_count == 2


async def test_the_last_subscriber_leaving_frees_the_channel() -> None:
    h, a, b = hub(), Listener("a"), Listener("b")
    await h.add("exports:u1", a)  # type: ignore[arg-type]
    await h.add("exports:u1", b)  # type: ignore[arg-type]
    assert h.discard("exports:u1", a) is False  # type: ignore[arg-type]
    assert h.subscribers("exports:u1") == [b]
    assert h.discard("exports:u1", b) is True  # type: ignore[arg-type]
    assert h.channels() == []
    assert h.broadcast("exports:u1", Publication(b"1")) == 0
    assert a.got == b.got == []


async def test_discarding_someone_else_from_a_lone_subscriber_changes_nothing() -> None:
    h, a, b = hub(), Listener("a"), Listener("b")
    await h.add("exports:u1", a)  # type: ignore[arg-type]
    assert h.discard("exports:u1", b) is False  # type: ignore[arg-type]
    assert h.discard("exports:u2", a) is False  # type: ignore[arg-type]
    assert h.subscribers("exports:u1") == [a]
    await h.remove("exports:u1", a)  # type: ignore[arg-type]
    assert h.subscribers("exports:u1") == []


async def test_join_and_leave_reach_a_lone_subscriber_and_many() -> None:
    h, a, b = hub(), Listener("a"), Listener("b")
    info = ClientInfo(user="u1", client="c1")
    await h.add("exports:u1", a)  # type: ignore[arg-type]
    assert h.broadcast_join_leave("exports:u1", "join", info) == 1
    await h.add("exports:u1", b)  # type: ignore[arg-type]
    assert h.broadcast_join_leave("exports:u1", "leave", info) == 2
    assert [channel for channel, _ in a.got] == ["exports:u1", "exports:u1"]
    assert [channel for channel, _ in b.got] == ["exports:u1"]
    assert h.broadcast_join_leave("exports:u9", "join", info) == 0
