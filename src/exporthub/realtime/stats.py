"""Counters of the channel server.

Plain integers and floats updated in place, so counting costs next to
nothing on the per-message paths; an application exports them in whatever
format it likes (exporthub renders them for Prometheus).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds, in seconds, of the command duration histogram."""


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (the last one for everything above), and the sum."""

    buckets: list[int] = field(
        default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1)
    )
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.buckets)


@dataclass(slots=True)
class Stats:
    """What a node has done since it started."""

    commands: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    """Client commands by (method, outcome): ``ok`` or the error's name."""
    publications: Counter[str] = field(default_factory=Counter)
    """Publications by channel namespace."""
    deliveries: Counter[str] = field(default_factory=Counter)
    """Publications written to connections, by channel namespace."""
    disconnects: Counter[str] = field(default_factory=Counter)
    """Server-side disconnects by reason (``slow``, ``no pong``...)."""

    def command(self, method: str, outcome: str, seconds: float) -> None:
        histogram = self.commands.get((method, outcome))
        if histogram is None:
            histogram = self.commands[(method, outcome)] = Histogram()
        histogram.observe(seconds)
