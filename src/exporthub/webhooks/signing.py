"""Signing secrets and the signature headers of a delivery.

A receiver recomputes HMAC-SHA256, keyed with the endpoint's secret, over
``"{timestamp}.{body}"`` and compares it with the ``v1=`` value of the
signature header. The timestamp is signed too, so a captured request cannot
be replayed later with a fresh timestamp; the README shows the check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from exporthub.webhooks.constants import (
    SECRET_BYTES,
    SECRET_PREFIX,
    SIGNATURE_VERSION,
    Header,
)


def new_secret() -> str:
    """A fresh signing secret for one endpoint."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with ``secret``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The timestamp and signature headers for ``body`` sent at ``timestamp``."""
    return {
        Header.TIMESTAMP: str(timestamp),
        Header.SIGNATURE: f"{SIGNATURE_VERSION}={signature(secret, timestamp, body)}",
    }
