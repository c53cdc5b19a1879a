"""Hacker News, through the public Firebase API (``{base}/item/{id}.json``).

The API has one item per request, so the thread is walked depth first with
the children of each item fetched concurrently, bounded by a semaphore.
Comments come out in thread order while only the siblings along the current
path are held in memory.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    PermanentSourceError,
    plain_text,
)
from exporthub.sources.http import get_json

DEFAULT_API = "https://hacker-news.firebaseio.com/v0"
PERMALINK = "https://news.ycombinator.com/item?id={}"
IN_FLIGHT = 8

_URL = re.compile(
    r"^https?://news\.ycombinator\.com/item\?(?:[^#]*&)?id=(\d+)(?:[&#].*)?$",
    re.IGNORECASE,
)


class HackerNews(Adapter):
    """Comments of a Hacker News story, poll or comment thread."""

    key = "hackernews"
    name = "Hacker News"
    url_patterns = ("https://news.ycombinator.com/item?id={id}",)
    examples = ("https://news.ycombinator.com/item?id=8863",)
    extra_columns = ("replies",)
    default_api = DEFAULT_API

    def __init__(self, *args: Any, in_flight: int = IN_FLIGHT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(in_flight)

    @classmethod
    def parse(cls, url: str) -> str | None:
        match = _URL.match(url)
        return match.group(1) if match else None

    async def comments(
        self, ref: str, options: ExportOptions
    ) -> AsyncIterator[Comment]:
        root = await self._item(ref)
        if root is None:
            raise PermanentSourceError(f"Hacker News item {ref} does not exist")
        if root.get("deleted") or root.get("dead"):
            raise PermanentSourceError(f"Hacker News item {ref} was deleted")
        self.total = root.get("descendants")
        kids = root.get("kids") or []
        if self.total is None:
            # A comment as the root has no descendants count; its direct
            # replies are the best lower bound known before the walk.
            self.total = len(kids)
        async for comment in self._walk(root["id"], kids, options):
            yield comment

    async def _walk(
        self, root: int, kids: list[int], options: ExportOptions
    ) -> AsyncIterator[Comment]:
        """Depth first, with an explicit stack: threads thousands of replies
        deep must not exhaust Python's recursion limit, and an id seen twice
        (a reply listed under two parents, a cycle) is exported once."""
        seen = {root}
        stack = [_Level(self._fetch(kids, seen), str(root), 0)]
        try:
            while stack:
                level = stack[-1]
                if level.next == len(level.fetches):
                    stack.pop()
                    continue
                item = await level.fetches[level.next]
                level.next += 1
                if item is None:
                    continue
                if not (item.get("deleted") or item.get("dead")):
                    yield _comment(item, level.parent, level.depth)
                # Replies to a deleted comment are still live on the site.
                replies = item.get("kids") or []
                if replies and options.replies:
                    fetches = self._fetch(replies, seen)
                    stack.append(_Level(fetches, str(item["id"]), level.depth + 1))
        finally:
            for level in stack:
                for fetch in level.fetches[level.next :]:
                    fetch.cancel()

    def _fetch(self, ids: list[int], seen: set[int]) -> list[asyncio.Future[Any]]:
        """Start fetching the items not seen yet, in order, concurrently."""
        fresh: list[asyncio.Future[Any]] = []
        for item_id in ids:
            if isinstance(item_id, int) and item_id not in seen:
                seen.add(item_id)
                fresh.append(asyncio.ensure_future(self._item(str(item_id))))
        return fresh

    async def _item(self, item_id: str) -> dict[str, Any] | None:
        async with self._gate:
            body, _ = await get_json(
                self.http, f"{self.base_url}/item/{item_id}.json", platform=self.name
            )
        return body if isinstance(body, dict) else None


@dataclass(slots=True)
class _Level:
    """One level of the walk: the siblings being fetched and where it is."""

    fetches: list[asyncio.Future[Any]]
    parent: str
    depth: int
    next: int = 0


def _comment(item: dict[str, Any], parent: str, depth: int) -> Comment:
    return Comment(
        id=str(item["id"]),
        parent_id=parent,
        depth=depth,
        author=item.get("by"),
        published_at=datetime.fromtimestamp(_seconds(item.get("time")), UTC),
        text=plain_text(item.get("text")),
        permalink=PERMALINK.format(item["id"]),
        replies=len(item.get("kids") or []),
    )


def _seconds(value: Any) -> int:
    """The item's Unix time; 0 (1970) when the API gives none or nonsense,
    rather than failing the whole export for one comment."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
