"""``GET /metrics``: what the node is doing, in Prometheus text format."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from exporthub.exports.constants import Status
from exporthub.realtime import Node
from exporthub.realtime.stats import DURATION_BUCKETS
from exporthub.store import Database, jobs

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "exporthub"


class NodeCollector(Collector):
    """Reads the channel server's counters and the latest job figures."""

    def __init__(self, node: Node, webhook_attempts: dict[str, int]) -> None:
        self.node = node
        self.webhook_attempts = webhook_attempts
        self.jobs_by_status: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        node, stats = self.node, self.node.stats
        yield GaugeMetricFamily(
            f"{PREFIX}_connections", "Open client connections.", node.connection_count
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_subscriptions",
            "Channel subscriptions of connected clients.",
            node.hub.subscription_count,
        )
        commands = HistogramMetricFamily(
            f"{PREFIX}_client_command_duration_seconds",
            "Client commands by method and outcome.",
            labels=["method", "outcome"],
        )
        for (method, outcome), histogram in sorted(stats.commands.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(
                [*map(str, DURATION_BUCKETS), "+Inf"], histogram.buckets, strict=True
            ):
                cumulative += count
                buckets.append((bound, cumulative))
            commands.add_metric([method, outcome], buckets, histogram.total)
        yield commands
        yield _counter(
            "publications",
            "Publications by channel namespace.",
            "namespace",
            stats.publications,
        )
        yield _counter(
            "deliveries",
            "Publications written to connections, by channel namespace.",
            "namespace",
            stats.deliveries,
        )
        yield _counter(
            "disconnects",
            "Connections closed by the server, by reason (slow, no pong...).",
            "reason",
            stats.disconnects,
        )
        by_status = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Jobs by status.", labels=["status"]
        )
        for status in Status:
            by_status.add_metric([status.value], self.jobs_by_status.get(status, 0))
        yield by_status
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_depth",
            "Jobs waiting for a worker.",
            self.jobs_by_status.get(Status.QUEUEING, 0),
        )
        yield _counter(
            "webhook_attempts",
            "Webhook delivery attempts by this process, by outcome.",
            "outcome",
            self.webhook_attempts,
        )


def _counter(name: str, help_text: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


async def count_jobs(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(jobs.c.status, func.count()).group_by(jobs.c.status)
        )
        return {status: count for status, count in rows}


def make_registry(
    node: Node, webhook_attempts: dict[str, int]
) -> tuple[CollectorRegistry, NodeCollector]:
    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector(node, webhook_attempts)
    registry.register(collector)
    return registry, collector


async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics_collector.jobs_by_status = await count_jobs(state.db)
    return Response(generate_latest(state.metrics_registry), media_type=CONTENT_TYPE)
