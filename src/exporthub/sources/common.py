"""Small pieces the platform adapters share: timestamps, plain-text bodies,
and the filter that applies the common options to a comment stream."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, datetime

from exporthub.sources.base import Comment, ExportOptions, plain_text

# Fractions are cut to microseconds, all a datetime holds, so parsing does not
# depend on how many digits a platform sends (some send nanoseconds).
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime; a missing offset is UTC.

    Raises:
        ValueError: ``value`` is not such a timestamp.
    """
    # RFC 3339 allows lower-case "t" and "z"; fromisoformat does not.
    moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip().upper()))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def from_epoch(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def seconds_until(epoch: str | None) -> float | None:
    """Seconds from now until the Unix time in a rate-limit reset header."""
    if not epoch:
        return None
    try:
        return max(0.0, float(epoch) - time.time())
    except ValueError:
        return None


def text_body(text: str | None) -> str:
    """Normalise a body the platform gives as plain text.

    The text goes through :func:`plain_text` as escaped HTML, so whitespace
    and line breaks end up exactly as they do for platforms that send HTML,
    while characters such as ``<`` and ``&`` stay literal.
    """
    if not text:
        return ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    return plain_text(html.escape(lines, quote=False).replace("\n", "<br>"))


def after_window(moment: datetime, options: ExportOptions) -> bool:
    """True when ``moment`` is past ``maxTimestamp``.

    Replies are never older than their parent on platforms whose server
    stamps the time, so a comment past the window has no reply inside it.
    """
    return (
        options.max_timestamp is not None and moment.timestamp() > options.max_timestamp
    )


async def admitted(
    stream: AsyncGenerator[Comment, None], options: ExportOptions
) -> AsyncGenerator[Comment, None]:
    """The comments of ``stream`` that ``options`` admit, up to its limit.

    Stopping at the limit closes ``stream``, so an adapter that fetches
    lazily stops paginating there.
    """
    if options.limit is not None and options.limit <= 0:
        return
    sent = 0
    async with aclosing(stream) as comments:
        async for comment in comments:
            if not options.admits(comment):
                continue
            yield comment
            sent += 1
            if options.limit is not None and sent >= options.limit:
                return
