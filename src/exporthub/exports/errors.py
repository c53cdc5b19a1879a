"""Errors of the export domain, each with its HTTP status and error code."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; ``code`` is machine-readable."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Invalid(DomainError):
    status = 422
    code = "invalid_request"


class UnsupportedURL(Invalid):
    code = "unsupported_url"


class InvalidOption(Invalid):
    code = "invalid_option"


class PlatformNotConfigured(Invalid):
    code = "platform_not_configured"
