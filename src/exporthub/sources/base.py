"""The contract every platform adapter follows.

An adapter is created for one export run. Its :meth:`Adapter.comments` async
generator yields :class:`Comment` records in thread order (a parent before its
replies) and sets :attr:`Adapter.total` as soon as the platform says how many
comments there are. Adapters raise :class:`TransientSourceError` for what a
retry may cure (rate limits, 5xx, timeouts) and :class:`PermanentSourceError`
for what it cannot (not found, private, deleted, bad key).
"""

from __future__ import annotations

import html
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx


@dataclass(frozen=True, slots=True)
class Comment:
    """One exported comment, the same shape for every platform.

    ``likes`` and ``replies`` are ``None`` where the platform has no such
    figure; the writers then leave those columns out.
    """

    id: str
    parent_id: str | None
    depth: int
    author: str | None
    published_at: datetime
    text: str
    permalink: str
    likes: int | None = None
    replies: int | None = None

    def to_record(self) -> dict[str, Any]:
        """The record written to JSON and NDJSON files, and the XLSX row."""
        record: dict[str, Any] = {
            "id": self.id,
            "parent_id": self.parent_id,
            "depth": self.depth,
            "author": self.author,
            "published_at": iso_utc(self.published_at),
            "text": self.text,
            "permalink": self.permalink,
        }
        if self.likes is not None:
            record["likes"] = self.likes
        if self.replies is not None:
            record["replies"] = self.replies
        return record


class SourceError(Exception):
    """A platform could not give the comments; ``reason`` is shown to users."""

    transient: ClassVar[bool] = False

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TransientSourceError(SourceError):
    """Rate limit, server error or timeout: the job is requeued and retried."""

    transient = True


class PermanentSourceError(SourceError):
    """Not found, private, deleted, bad key: retrying will not help."""


class OptionError(ValueError):
    """A job option has the wrong type or an impossible value."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Options every adapter honours, plus platform-specific switches.

    ``limit`` caps the number of comments; ``min_timestamp`` and
    ``max_timestamp`` (Unix seconds, inclusive) keep comments published in
    that window; ``replies`` false keeps top-level comments only.
    """

    replies: bool = True
    limit: int | None = None
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> ExportOptions:
        """Validate the ``options`` object of a job request."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise OptionError("options must be a JSON object")
        extra = {
            k: v
            for k, v in raw.items()
            if k not in ("replies", "limit", "minTimestamp", "maxTimestamp")
        }
        replies = raw.get("replies", True)
        if not isinstance(replies, bool):
            raise OptionError("options.replies must be true or false")
        limit = _optional_int(raw, "limit", minimum=1)
        low = _optional_int(raw, "minTimestamp", minimum=0)
        high = _optional_int(raw, "maxTimestamp", minimum=0)
        if low is not None and high is not None and low > high:
            raise OptionError("options.minTimestamp is after options.maxTimestamp")
        return cls(replies, limit, low, high, extra)

    def admits(self, comment: Comment) -> bool:
        """True when the comment falls inside the time window and depth rule."""
        if not self.replies and comment.depth > 0:
            return False
        ts = comment.published_at.timestamp()
        if self.min_timestamp is not None and ts < self.min_timestamp:
            return False
        return not (self.max_timestamp is not None and ts > self.max_timestamp)


def _optional_int(raw: Mapping[str, Any], key: str, *, minimum: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise OptionError(f"options.{key} must be an integer >= {minimum}")
    return value


class Adapter(ABC):
    """A platform adapter, created for one export run.

    Args:
        http: the shared HTTP client (timeouts and limits set by the caller).
        base_url: the platform API's base, configurable so tests point it at
            a local fixture server.
        secret: the API key or token from ``secret_setting``, if any.
    """

    key: ClassVar[str]
    """Stable identifier, e.g. ``hackernews``."""
    name: ClassVar[str]
    """Human name shown to users, e.g. ``Hacker News``."""
    url_patterns: ClassVar[tuple[str, ...]]
    """URL shapes accepted, for humans (``GET /api/v3/platforms``)."""
    examples: ClassVar[tuple[str, ...]]
    option_help: ClassVar[Mapping[str, str]] = {}
    """Platform-specific options and what they do."""
    extra_columns: ClassVar[tuple[str, ...]] = ()
    """Optional :class:`Comment` fields this platform fills (``likes``,
    ``replies``); the XLSX and CSV files get those columns."""
    default_api: ClassVar[str]
    """The public API base used when no ``EXPORTHUB_<KEY>_API`` is set."""
    secret_setting: ClassVar[str | None] = None
    """Name of the environment variable holding an API key or token."""
    secret_required: ClassVar[bool] = False
    """When true, jobs are refused while that variable is unset."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, secret: str | None = None
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.total: int | None = None

    @classmethod
    @abstractmethod
    def parse(cls, url: str) -> str | None:
        """The platform's id for the post at ``url``, or None if not ours."""

    @abstractmethod
    def comments(self, ref: str, options: ExportOptions) -> AsyncIterator[Comment]:
        """Yield every comment of ``ref`` in thread order."""


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``+00:00`` offset, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


_BLOCK_BREAK = re.compile(r"<\s*(?:p|br|/p|div|/div|li)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_BLANK_RUN = re.compile(r"\n{2,}")


def plain_text(markup: str | None) -> str:
    """Turn a platform's HTML comment body into plain text.

    Paragraphs and line breaks become one newline each, other tags are
    dropped, and entities are decoded after the tags are gone so that
    ``&lt;b&gt;`` stays the literal text ``<b>``.
    """
    if not markup:
        return ""
    text = _BLOCK_BREAK.sub("\n", markup)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\r\n", "\n")
    text = _BLANK_RUN.sub("\n", text)
    return text.strip()
