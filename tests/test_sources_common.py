"""The helpers the adapters share."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta, timezone

from exporthub.sources.base import Comment, ExportOptions
from exporthub.sources.common import admitted, parse_time, text_body

START = datetime(2024, 1, 1, tzinfo=UTC)


def test_parse_time_reads_lower_case_separators() -> None:
    assert parse_time("2024-01-01t10:00:00z") == datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_parse_time_cuts_nanoseconds_to_microseconds() -> None:
    assert parse_time("2024-01-01T10:00:00.123456789Z") == datetime(
        2024, 1, 1, 10, 0, 0, 123456, tzinfo=UTC
    )


def test_parse_time_keeps_an_offset() -> None:
    assert parse_time("2024-01-01T10:00:00+05:30") == datetime(
        2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )


def test_parse_time_takes_a_missing_offset_as_utc() -> None:
    assert parse_time("2024-01-01T10:00:00") == datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_text_body_keeps_markup_characters_literal() -> None:
    assert text_body("a < b && c > d &amp;") == "a < b && c > d &amp;"


def test_text_body_normalises_line_breaks_like_plain_text() -> None:
    assert text_body("  one\r\n\r\n\rtwo\nthree  ") == "one\ntwo\nthree"


def _comment(n: int, depth: int = 0) -> Comment:
    return Comment(
        id=str(n),
        parent_id=None,
        depth=depth,
        author="a",
        published_at=START + timedelta(minutes=n),
        text="t",
        permalink=f"https://example.invalid/{n}",
    )


async def test_admitted_closes_the_stream_at_the_limit() -> None:
    pulled: list[int] = []
    closed: list[bool] = []

    async def stream() -> AsyncGenerator[Comment, None]:
        try:
            for n in range(10):
                pulled.append(n)
                yield _comment(n, depth=n % 2)
        finally:
            closed.append(True)

    options = ExportOptions(replies=False, limit=2)
    kept = [c.id async for c in admitted(stream(), options)]
    assert (kept, pulled, closed) == (["0", "2"], [0, 1, 2], [True])
