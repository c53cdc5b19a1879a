"""Minimal clients of the three protocols the servers under test speak.

* ``centrifugo``: the Centrifugo client protocol v2 in JSON (exporthub):
  a ``connect`` command with the token, the server's subscriptions in the
  reply, newline-separated messages per frame, ``{}`` pings answered ``{}``.
* ``socketio``: Socket.IO v5 over Engine.IO v4, WebSocket transport only:
  ``0{..}`` open, ``40{auth}`` connect, ``42[event, body]`` events,
  ``2``/``3`` ping/pong.
* ``raw``: the bare broadcast ceiling; channels in the query string, one
  ``{"ready":true}`` once they are registered, then Centrifugo-shaped pushes.

Every client hands each publication's ``data`` to a :class:`Recorder`.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from typing import Any
from urllib.parse import quote

import orjson
from wsclient import WebSocketClient

loads = orjson.loads


class Refused(Exception):
    """The server answered the protocol-level connect with an error."""


class Recorder:
    """What one worker process received: counts always, and while active
    the publish time and latency of each delivery, and per-``seq`` totals."""

    __slots__ = ("active", "count", "latencies", "sent_at", "seqs")

    def __init__(self) -> None:
        self.count = 0
        self.active = False
        self.sent_at = array("d")
        self.latencies = array("d")
        self.seqs: dict[int, list[float]] = {}

    def reset(self, active: bool) -> None:
        self.count = 0
        self.active = active
        self.sent_at = array("d")
        self.latencies = array("d")
        self.seqs = {}

    def record(self, data: dict[str, Any]) -> None:
        self.count += 1
        if not self.active:
            return
        now = time.time()
        ts = data["ts"]
        self.sent_at.append(ts)
        self.latencies.append((now - ts) * 1000.0)
        seq = data["seq"]
        entry = self.seqs.get(seq)
        if entry is None:
            # [deliveries, first receive, last receive]
            self.seqs[seq] = [1.0, now, now]
        else:
            entry[0] += 1.0
            entry[2] = now


class _ProtocolClient(WebSocketClient):
    """A connection that is ``ready`` once the server has confirmed its
    subscriptions; failures resolve ``ready`` with an exception."""

    def __init__(self, host: str, path: str, recorder: Recorder) -> None:
        super().__init__(host, path)
        self.recorder = recorder
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _ready(self, exc: Exception | None = None) -> None:
        if self.ready.done():
            return
        if exc is None:
            self.ready.set_result(None)
        else:
            self.ready.set_exception(exc)

    def on_closed(self) -> None:
        if self.error is not None:
            self._ready(self.error)
        else:
            self._ready(ConnectionResetError(f"closed, code {self.close_code}"))


class CentrifugoClient(_ProtocolClient):
    PATH = "/connection/websocket"

    def __init__(
        self, host: str, recorder: Recorder, token: str, channels: list[str]
    ) -> None:
        super().__init__(host, self.PATH, recorder)
        self._token = token
        self._expected = len(channels)

    def on_open(self) -> None:
        self.send(orjson.dumps({"id": 1, "connect": {"token": self._token}}))

    def on_message(self, payload: bytes) -> None:
        lines = payload.split(b"\n") if b"\n" in payload else (payload,)
        for line in lines:
            if line == b"{}":
                self.send(b"{}")
                continue
            message = loads(line)
            push = message.get("push")
            if push is not None:
                pub = push.get("pub")
                if pub is not None:
                    self.recorder.record(pub["data"])
                continue
            if message.get("id") == 1:
                self._on_connect_reply(message)

    def _on_connect_reply(self, message: dict[str, Any]) -> None:
        reply = message.get("connect")
        if reply is None:
            self._ready(Refused(str(message.get("error"))))
        elif len(reply.get("subs") or {}) != self._expected:
            self._ready(Refused(f"subs: {sorted(reply.get('subs') or {})}"))
        else:
            self._ready()


class SocketIOClient(_ProtocolClient):
    PATH = "/socket.io/?EIO=4&transport=websocket"

    def __init__(
        self, host: str, recorder: Recorder, token: str, channels: list[str]
    ) -> None:
        super().__init__(host, self.PATH, recorder)
        self._token = token

    def on_message(self, payload: bytes) -> None:
        kind = payload[:1]
        if kind == b"4":
            sub = payload[1:2]
            if sub == b"2":
                event = loads(payload[2:])
                if event[0] == "pub":
                    self.recorder.record(event[1]["data"])
            elif sub == b"0":
                self._ready()
            elif sub == b"4":
                self._ready(Refused(payload[2:].decode(errors="replace")))
        elif kind == b"2":
            self.send(b"3")
        elif kind == b"0":
            # Engine.IO is open: connect to the default namespace with auth.
            self.send(b"40" + orjson.dumps({"token": self._token}))
        elif kind == b"1":
            self.close()


class RawClient(_ProtocolClient):
    PATH = "/"

    def __init__(
        self, host: str, recorder: Recorder, token: str, channels: list[str]
    ) -> None:
        query = quote(",".join(channels), safe=",:")
        super().__init__(host, f"/?channels={query}", recorder)

    def on_message(self, payload: bytes) -> None:
        message = loads(payload)
        push = message.get("push")
        if push is not None:
            self.recorder.record(push["pub"]["data"])
        elif message.get("ready"):
            self._ready()


CLIENTS: dict[str, type[_ProtocolClient]] = {
    "centrifugo": CentrifugoClient,
    "socketio": SocketIOClient,
    "raw": RawClient,
}
