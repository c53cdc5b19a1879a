"""Platform adapters: each turns a post's URL into a stream of comments."""

from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    OptionError,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from exporthub.sources.registry import UnsupportedURL, detect, platforms

__all__ = [
    "Adapter",
    "Comment",
    "ExportOptions",
    "OptionError",
    "PermanentSourceError",
    "SourceError",
    "TransientSourceError",
    "UnsupportedURL",
    "detect",
    "platforms",
]
