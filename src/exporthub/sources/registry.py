"""Which adapter handles a URL: the one place that maps URLs to platforms."""

from __future__ import annotations

from typing import Any

from exporthub.sources.base import Adapter
from exporthub.sources.bluesky import Bluesky
from exporthub.sources.github import GitHub
from exporthub.sources.hackernews import HackerNews
from exporthub.sources.mastodon import Mastodon
from exporthub.sources.reddit import Reddit
from exporthub.sources.youtube import YouTube

# Mastodon comes last: its URL shape fits any host, so every platform with a
# fixed host is tried first.
ADAPTERS: tuple[type[Adapter], ...] = (
    HackerNews,
    YouTube,
    Reddit,
    Bluesky,
    GitHub,
    Mastodon,
)


class UnsupportedURL(ValueError):
    """No adapter recognises the URL."""

    def __init__(self, url: str) -> None:
        names = ", ".join(a.name for a in ADAPTERS)
        super().__init__(
            f"unsupported URL {url!r}: exporthub exports comments from {names};"
            " see GET /api/v3/platforms for the URL shapes each one accepts"
        )


def detect(url: str) -> tuple[type[Adapter], str]:
    """The adapter class for ``url`` and the platform's id of the post."""
    if isinstance(url, str):
        for adapter in ADAPTERS:
            ref = adapter.parse(url.strip())
            if ref is not None:
                return adapter, ref
    raise UnsupportedURL(str(url))


def platform_name(key: str) -> str:
    """The human name of the platform ``key`` (the key itself if unknown)."""
    return next((a.name for a in ADAPTERS if a.key == key), key)


def platforms() -> list[dict[str, Any]]:
    """What ``GET /api/v3/platforms`` lists."""
    common = {
        "replies": "include replies (default true)",
        "limit": "stop after this many comments",
        "minTimestamp": "only comments published at or after (Unix seconds)",
        "maxTimestamp": "only comments published at or before (Unix seconds)",
    }
    return [
        {
            "key": a.key,
            "name": a.name,
            "url_patterns": list(a.url_patterns),
            "examples": list(a.examples),
            "options": {**common, **a.option_help},
        }
        for a in ADAPTERS
    ]
