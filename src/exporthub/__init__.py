"""exporthub: comment exports with a Centrifugo-compatible channel server."""

__version__ = "0.1.0"
