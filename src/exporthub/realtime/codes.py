"""Error and disconnect codes of the Centrifugo client protocol.

The numbers are the protocol's own, so that unmodified clients react to them
as they would to Centrifugo: an error code is sent in a reply, a disconnect
code closes the WebSocket with that code and reason. Codes 3500-3999 tell a
client not to reconnect; 3000-3499 let it reconnect.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    """An error in a reply to one command; the connection stays open."""

    INTERNAL = (100, "internal server error")
    UNAUTHORIZED = (101, "unauthorized")
    UNKNOWN_CHANNEL = (102, "unknown channel")
    PERMISSION_DENIED = (103, "permission denied")
    METHOD_NOT_FOUND = (104, "method not found")
    ALREADY_SUBSCRIBED = (105, "already subscribed")
    LIMIT_EXCEEDED = (106, "limit exceeded")
    BAD_REQUEST = (107, "bad request")
    NOT_AVAILABLE = (108, "not available")
    TOKEN_EXPIRED = (109, "token expired")
    EXPIRED = (110, "expired")
    TOO_MANY_REQUESTS = (111, "too many requests")
    UNRECOVERABLE_POSITION = (112, "unrecoverable position")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    def payload(self) -> dict[str, object]:
        """The ``error`` object of a reply."""
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self is ErrorCode.TOKEN_EXPIRED:
            body["temporary"] = True
        return body


class ApiError(Enum):
    """An error in a reply of the server API (``POST /api/{method}``).

    The numbers and messages are Centrifugo's server API ones, which differ
    from the client protocol's in places (104 is "not found" here).
    """

    INTERNAL = (100, "internal server error")
    UNAUTHORIZED = (101, "unauthorized")
    UNKNOWN_CHANNEL = (102, "unknown channel")
    NOT_FOUND = (104, "not found")
    LIMIT_EXCEEDED = (106, "limit exceeded")
    BAD_REQUEST = (107, "bad request")
    NOT_AVAILABLE = (108, "not available")
    UNRECOVERABLE_POSITION = (112, "unrecoverable position")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    def payload(self) -> dict[str, object]:
        """The ``error`` object of a reply."""
        return {"code": self.code, "message": self.message}


class Disconnect(Enum):
    """Why the server closes a connection: a WebSocket close code and reason."""

    CONNECTION_CLOSED = (3000, "connection closed")
    SHUTDOWN = (3001, "shutdown")
    INTERNAL = (3004, "internal server error")
    EXPIRED = (3005, "connection expired")
    SUBSCRIPTION_EXPIRED = (3006, "subscription expired")
    SLOW = (3008, "slow")
    INSUFFICIENT_STATE = (3010, "insufficient state")
    WRITE_ERROR = (3009, "write error")
    FORCE_RECONNECT = (3011, "force reconnect")
    NO_PONG = (3012, "no pong")
    TOO_MANY_REQUESTS = (3013, "too many requests")
    INVALID_TOKEN = (3500, "invalid token")
    BAD_REQUEST = (3501, "bad request")
    STALE = (3502, "stale")
    FORCE_NO_RECONNECT = (3503, "force disconnect")
    CONNECTION_LIMIT = (3504, "connection limit")
    CHANNEL_LIMIT = (3505, "channel limit")
    PERMISSION_DENIED = (3507, "permission denied")
    TOO_MANY_ERRORS = (3509, "too many errors")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    @property
    def reconnect(self) -> bool:
        """Whether a client should try again after this disconnect."""
        return self.code < 3500


# WebSocket close code (RFC 6455) for a message larger than the server takes;
# clients map it to their "message size limit" state and do not reconnect.
CLOSE_MESSAGE_TOO_BIG = 1009
