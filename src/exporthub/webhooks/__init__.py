"""Webhooks: signed, retried, at-least-once delivery of every job event to
the endpoints users register."""

from exporthub.netguard import AddressRefused, EndpointError
from exporthub.webhooks.dispatcher import Dispatcher

__all__ = ["AddressRefused", "Dispatcher", "EndpointError"]
