"""Request and response helpers: JSON errors, bounded JSON bodies, auth."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from exporthub.accounts import User, authenticate

API_KEY_HEADER = "x-auth-token"


class JSONResponse(Response):
    """A JSON response encoded with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class HTTPError(Exception):
    """Ends a request with ``{"error": message, "error_code": code}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_code": code}, status_code=status)


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The request's JSON body, read up to the configured size limit.

    Raises:
        HTTPError: 413 over the limit, 400 when it is not JSON, or when it
            is missing and ``required``.
    """
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, "body_too_large", f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, "body_too_large", f"request body over {limit} bytes")
    if not body.strip():
        if required:
            raise HTTPError(400, "invalid_json", "a JSON body is required")
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, "invalid_json", f"the body is not JSON: {exc}") from exc


async def read_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """Like :func:`read_json`, but the body must be a JSON object."""
    body = await read_json(request, required=required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HTTPError(400, "invalid_json", "the body must be a JSON object")
    return body


async def current_user(request: Request) -> User:
    """The user whose API key is in ``X-AUTH-TOKEN``.

    Raises:
        HTTPError: 401 when the header is missing or the key is unknown.
    """
    api_key = request.headers.get(API_KEY_HEADER)
    if not api_key:
        raise HTTPError(
            401, "missing_api_key", "send your API key in the X-AUTH-TOKEN header"
        )
    user = await authenticate(request.app.state.db, api_key)
    if user is None:
        raise HTTPError(401, "invalid_api_key", "the API key is not valid")
    return user
