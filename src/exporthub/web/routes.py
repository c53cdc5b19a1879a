"""Routes of the dashboard page: ``/`` and its files under ``/static/``."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
INDEX = STATIC_DIR / "index.html"
STATIC_PREFIX = "/static"

# The page loads only its own files and talks only to its own origin (the
# API and the WebSocket); download links are plain navigations, which
# connect-src does not restrict.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page itself is small; always revalidate so an upgrade shows at once.
    "Cache-Control": "no-cache",
}


async def index(request: Request) -> Response:
    """The dashboard page."""
    return FileResponse(INDEX, media_type="text/html", headers=PAGE_HEADERS)


routes: list[BaseRoute] = [
    Route("/", index, methods=["GET", "HEAD"]),
    Mount(STATIC_PREFIX, app=StaticFiles(directory=STATIC_DIR), name="static"),
]
