"""What the client commands print: event lines and the job table."""

from __future__ import annotations

from datetime import datetime

from exporthub.client import Publication
from exporthub.client_cli import describe, table


def test_describe_puts_a_job_event_on_one_line() -> None:
    line = describe(
        Publication(
            "exports:u1",
            {
                "event": "job.progress",
                "guid": "g1",
                "status": "progress",
                "current": 2,
                "total": 8,
                "url": None,
                "details": {},
            },
        ),
        now=datetime(2026, 1, 2, 3, 4, 5),
    )
    assert line == "03:04:05 exports job.progress g1 progress 2/8"


def test_table_pads_every_column_but_the_last() -> None:
    assert table(("A", "BB", "C"), [("xyz", "1", "long value")]) == [
        "A    BB  C",
        "xyz  1   long value",
    ]


def test_describe_puts_a_notification_on_one_line_with_its_level() -> None:
    line = describe(
        Publication(
            "user_notifications_channel:u1",
            {
                "type": "export_failed",
                "payload": {
                    "title": "Export failed",
                    "message": "The export of X failed: gone",
                    "level": "error",
                },
                "timestamp": "2026-01-02T03:04:05+00:00",
            },
        ),
        now=datetime(2026, 1, 2, 3, 4, 5),
    )
    assert line == (
        "03:04:05 user_notifications_channel export_failed [error] "
        "Export failed: The export of X failed: gone"
    )
