"""A local reverse proxy that forwards plain HTTP and refuses WebSocket
upgrades, as some corporate proxies and load balancers do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


@dataclass
class Forwarded:
    """One request the proxy forwarded, and what came back."""

    method: str
    path: str
    status: int
    body: bytes


@dataclass
class HttpOnlyProxy:
    """The proxy's address and what it saw."""

    upstream: str
    url: str = ""
    forwarded: list[Forwarded] = field(default_factory=list)
    refused_upgrades: int = 0


def _handler(proxy: HttpOnlyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if self.headers.get("Upgrade", "").lower() == "websocket":
                proxy.refused_upgrades += 1
                self._reply(403, b"this proxy forwards plain HTTP only", {})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP
            }
            with httpx.Client(base_url=proxy.upstream, timeout=30) as client:
                answer = client.request(
                    self.command, self.path, content=body, headers=headers
                )
            proxy.forwarded.append(
                Forwarded(self.command, self.path, answer.status_code, answer.content)
            )
            kept = {
                k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP
            }
            self._reply(answer.status_code, answer.content, kept)

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def http_only_proxy(upstream: str) -> Iterator[HttpOnlyProxy]:
    """Run the proxy on a free loopback port in front of ``upstream``."""
    proxy = HttpOnlyProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
