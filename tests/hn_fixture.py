"""A local stand-in for the Hacker News Firebase API.

It answers ``GET /v0/item/{id}.json`` with the items it was given, in the
shapes the real API uses (``kids``, ``deleted``, ``dead``, HTML ``text``),
``null`` for unknown ids. Items can be made to fail or to wait for a gate,
so tests can hold a job at a known point.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ITEM = re.compile(r"^/v0/item/(\d+)\.json$")

STORY_ID = 8863

# A thread with nested replies, a deleted comment that has a live reply, a
# dead comment, HTML entities, links, paragraphs and non-ASCII text.
THREAD: dict[int, dict[str, Any]] = {
    8863: {
        "by": "dhouston",
        "descendants": 5,
        "id": 8863,
        "kids": [9001, 9002, 9003],
        "score": 111,
        "time": 1175714200,
        "title": "My YC app: Dropbox - Throw away your USB drive",
        "type": "story",
        "url": "http://www.getdropbox.com/u/2/screencast.html",
    },
    9001: {
        "by": "norvig",
        "id": 9001,
        "kids": [9004, 9005],
        "parent": 8863,
        "text": "Nice &amp; simple.<p>Second paragraph with "
        '<a href="https:&#x2F;&#x2F;example.com&#x2F;a" rel="nofollow">a link</a>.',
        "time": 1175714300,
        "type": "comment",
    },
    9004: {
        "by": "pg",
        "id": 9004,
        "kids": [9007],
        "parent": 9001,
        "text": "Agreed &#x2F; <i>really</i> good",
        "time": 1175714400,
        "type": "comment",
    },
    9007: {
        "by": "jl",
        "id": 9007,
        "parent": 9004,
        "text": "Ünïcödé — 日本語 ✓ &lt;b&gt;not bold&lt;&#x2F;b&gt;",
        "time": 1175714500,
        "type": "comment",
    },
    9005: {
        "deleted": True,
        "id": 9005,
        "kids": [9008],
        "parent": 9001,
        "time": 1175714600,
        "type": "comment",
    },
    9008: {
        "by": "tptacek",
        "id": 9008,
        "parent": 9005,
        "text": "Replying to a deleted comment",
        "time": 1175714700,
        "type": "comment",
    },
    9002: {
        "by": "spammer",
        "dead": True,
        "id": 9002,
        "parent": 8863,
        "text": "buy now",
        "time": 1175714800,
        "type": "comment",
    },
    9003: {
        "by": "dang",
        "id": 9003,
        "parent": 8863,
        "text": "Last top-level &quot;quoted&quot;",
        "time": 1175714900,
        "type": "comment",
    },
}

# The rows the export must contain, in thread order.
EXPECTED_ROWS = [
    {
        "id": "9001",
        "parent_id": "8863",
        "depth": 0,
        "author": "norvig",
        "published_at": "2007-04-04T19:18:20+00:00",
        "text": "Nice & simple.\nSecond paragraph with a link.",
        "permalink": "https://news.ycombinator.com/item?id=9001",
        "replies": 2,
    },
    {
        "id": "9004",
        "parent_id": "9001",
        "depth": 1,
        "author": "pg",
        "published_at": "2007-04-04T19:20:00+00:00",
        "text": "Agreed / really good",
        "permalink": "https://news.ycombinator.com/item?id=9004",
        "replies": 1,
    },
    {
        "id": "9007",
        "parent_id": "9004",
        "depth": 2,
        "author": "jl",
        "published_at": "2007-04-04T19:21:40+00:00",
        "text": "Ünïcödé — 日本語 ✓ <b>not bold</b>",
        "permalink": "https://news.ycombinator.com/item?id=9007",
        "replies": 0,
    },
    {
        "id": "9008",
        "parent_id": "9005",
        "depth": 2,
        "author": "tptacek",
        "published_at": "2007-04-04T19:25:00+00:00",
        "text": "Replying to a deleted comment",
        "permalink": "https://news.ycombinator.com/item?id=9008",
        "replies": 0,
    },
    {
        "id": "9003",
        "parent_id": "8863",
        "depth": 0,
        "author": "dang",
        "published_at": "2007-04-04T19:28:20+00:00",
        "text": 'Last top-level "quoted"',
        "permalink": "https://news.ycombinator.com/item?id=9003",
        "replies": 0,
    },
]


class HackerNewsFixture:
    """The fixture server's state: items, failures and gates by item id."""

    def __init__(self, items: dict[int, dict[str, Any]]) -> None:
        self.items = dict(items)
        self.status: dict[int, int] = {}
        self.gates: dict[int, threading.Event] = {}
        self.requests: list[int] = []
        self.base_url = ""

    def hold(self, item_id: int) -> threading.Event:
        """Make ``item_id`` wait until the returned event is set."""
        gate = threading.Event()
        self.gates[item_id] = gate
        return gate


def _handler(fixture: HackerNewsFixture) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = _ITEM.match(self.path.split("?")[0])
            if not match:
                self._send(404, {"error": "Not found"})
                return
            item_id = int(match.group(1))
            fixture.requests.append(item_id)
            gate = fixture.gates.get(item_id)
            if gate is not None:
                gate.wait(30)
            status = fixture.status.get(item_id)
            if status is not None:
                self._send(status, {"error": "fixture failure"})
                return
            self._send(200, fixture.items.get(item_id))

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 makes the kernel drop a burst of concurrent
    # connections, which then wait for SYN retransmits (1 s, 3 s, ...).
    request_queue_size = 128


@contextmanager
def serve_hackernews(
    items: dict[int, dict[str, Any]] | None = None,
) -> Iterator[HackerNewsFixture]:
    """Run the fixture on a free loopback port for the duration."""
    fixture = HackerNewsFixture(THREAD if items is None else items)
    server = _Server(("127.0.0.1", 0), _handler(fixture))
    server.daemon_threads = True
    fixture.base_url = f"http://127.0.0.1:{server.server_address[1]}/v0"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fixture
    finally:
        for gate in fixture.gates.values():
            gate.set()
        server.shutdown()
        server.server_close()
