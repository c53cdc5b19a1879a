"""Webhooks: signed, retried, at-least-once delivery of every job event to
the endpoints users register."""

from exporthub.webhooks.dispatcher import Dispatcher
from exporthub.webhooks.guard import AddressRefused, EndpointError

__all__ = ["AddressRefused", "Dispatcher", "EndpointError"]
