"""Hacker News threads for the page and command-line tests."""

from __future__ import annotations

from typing import Any

STORY = 1
MISSING_STORY = 404


def flat_thread(story: int = STORY, comments: int = 8) -> dict[int, dict[str, Any]]:
    """A story with ``comments`` top-level comments, ids ``story*10+1`` on.

    With eight, holding the third comment stops a job at 25 percent.
    """
    kids = [story * 10 + n for n in range(1, comments + 1)]
    items: dict[int, dict[str, Any]] = {
        story: {
            "by": "op",
            "descendants": len(kids),
            "id": story,
            "kids": kids,
            "time": 1700000000,
            "title": f"{comments} comments",
            "type": "story",
        }
    }
    for kid in kids:
        items[kid] = {
            "by": f"user{kid}",
            "id": kid,
            "parent": story,
            "text": f"comment {kid}",
            "time": 1700000000 + kid,
            "type": "comment",
        }
    return items


def story_url(story: int = STORY) -> str:
    return f"https://news.ycombinator.com/item?id={story}"
