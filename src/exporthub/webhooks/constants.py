"""Names and limits of webhook delivery, defined once."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """A delivery is pending until it succeeds or its attempts run out."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Header:
    """Headers of every delivery request."""

    DELIVERY = "Exporthub-Delivery"
    EVENT = "Exporthub-Event"
    ATTEMPT = "Exporthub-Attempt"
    TIMESTAMP = "Exporthub-Timestamp"
    SIGNATURE = "Exporthub-Signature"


SIGNATURE_VERSION = "v1"
"""Prefix of a signature in the signature header: ``v1=<hex>``."""
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "exporthub-webhooks/0.1"

MAX_WEBHOOKS_PER_USER = 20
RESOLVE_TIMEOUT = 5.0
"""Seconds a registration may spend resolving the endpoint's host."""

RESPONSE_READ_LIMIT = 4096
"""Bytes of an endpoint's answer that are read; the rest is never read."""
RESPONSE_EXCERPT_CHARS = 512
"""Characters of the answer kept with the attempt, for the deliveries list."""
ERROR_CHARS = 500

MAX_IN_FLIGHT = 64
"""Attempts one process has on the wire at once, over every endpoint."""
LEASE_MARGIN = 5.0
"""Seconds a claim outlives the attempt timeout, for recording the result."""
POLL_INTERVAL = 1.0
"""Seconds between looks at the table when nothing wakes the dispatcher;
other processes may store deliveries or let leases expire."""
CLAIM_BATCH = 100
JITTER = 0.25
"""Retry delays are stretched by up to this fraction so retries spread."""
MAX_RETRY_DELAY = 6 * 3600.0
DELIVERY_RETENTION = 30 * 24 * 3600.0
"""Seconds a finished delivery and its attempts are kept."""
PRUNE_INTERVAL = 3600.0

INTERRUPTED = "interrupted: the process sending it stopped"
