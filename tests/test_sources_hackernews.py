"""The Hacker News adapter against the local stand-in of its API."""

from __future__ import annotations

import httpx
import pytest

from exporthub.sources import ExportOptions
from exporthub.sources.hackernews import HackerNews
from hn_fixture import EXPECTED_ROWS, STORY_ID, serve_hackernews

DEPTH = 2500


def story(kids: list[int], descendants: int) -> dict:
    return {
        "by": "op",
        "id": 1,
        "kids": kids,
        "descendants": descendants,
        "time": 1700000000,
        "type": "story",
    }


def comment(item_id: int, parent: int, kids: list[int], time: object = 1700000100):
    return {
        "by": f"u{item_id}",
        "id": item_id,
        "parent": parent,
        "kids": kids,
        "text": f"c{item_id}",
        "time": time,
        "type": "comment",
    }


async def export(items: dict, ref: str, **options: object) -> list:
    with serve_hackernews(items) as hn:
        async with httpx.AsyncClient(timeout=10) as http:
            adapter = HackerNews(http, hn.base_url)
            return [c async for c in adapter.comments(ref, ExportOptions(**options))]


async def test_the_thread_comes_out_in_order_with_parents_and_depths() -> None:
    with serve_hackernews() as hn:
        async with httpx.AsyncClient(timeout=10) as http:
            adapter = HackerNews(http, hn.base_url)
            found = [c async for c in adapter.comments(str(STORY_ID), ExportOptions())]
    assert [c.to_record() for c in found] == EXPECTED_ROWS
    assert adapter.total == 5


@pytest.mark.timeout(120)
async def test_a_thread_thousands_of_replies_deep_is_exported_whole() -> None:
    items = {1: story([2], DEPTH)}
    for n in range(2, DEPTH + 2):
        items[n] = comment(n, n - 1, [n + 1] if n < DEPTH + 1 else [])
    found = await export(items, "1")
    assert len(found) == DEPTH
    assert (found[-1].id, found[-1].depth, found[-1].parent_id) == (
        str(DEPTH + 1),
        DEPTH - 1,
        str(DEPTH),
    )


async def test_a_reply_cycle_exports_each_comment_once() -> None:
    items = {
        1: story([2], 2),
        2: comment(2, 1, [3]),
        3: comment(3, 2, [2, 1]),
    }
    found = await export(items, "1")
    assert [(c.id, c.parent_id, c.depth) for c in found] == [
        ("2", "1", 0),
        ("3", "2", 1),
    ]


async def test_a_comment_with_a_nonsense_time_does_not_fail_the_export() -> None:
    items = {
        1: story([2, 3], 2),
        2: comment(2, 1, [], "yesterday"),
        3: comment(3, 1, []),
    }
    found = await export(items, "1")
    assert [(c.id, c.published_at.year) for c in found] == [("2", 1970), ("3", 2023)]


async def test_without_replies_only_top_level_comments_are_fetched() -> None:
    with serve_hackernews() as hn:
        async with httpx.AsyncClient(timeout=10) as http:
            adapter = HackerNews(http, hn.base_url)
            found = [
                c
                async for c in adapter.comments(
                    str(STORY_ID), ExportOptions(replies=False)
                )
            ]
        requested = sorted(hn.requests)
    assert [c.id for c in found] == ["9001", "9003"]
    assert requested == [8863, 9001, 9002, 9003]
