"""Two processes dispatching webhooks from one PostgreSQL database:
``exporthub serve`` and ``exporthub worker`` never send the same attempt.

Each process runs one job at a time and both are made to hold a job before
any finishes, so both produce events and both dispatchers have deliveries
to race for; which one sends what is left to them.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from backends import postgres_database
from hn_fixture import serve_hackernews
from servers import EXPORTHUB, run_server, server_env, stop
from webhook_api import LOOPBACK_ONLY, WAIT, UserApi, eventually
from webhook_receiver import serve_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

JOBS = 6
EVENTS_PER_JOB = 2
REFUSALS = 8
HELD_ITEM = 9003
"""The last comment of the fixture thread: a job waits on it while held."""


@contextmanager
def run_worker(data_dir: Path, **overrides: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``exporthub worker``; always stopped afterwards."""
    env = server_env(data_dir, **overrides)
    with (data_dir / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [*EXPORTHUB, "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


async def test_serve_and_worker_on_one_database_never_send_one_attempt_twice(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with postgres_database() as database_url:
        with (
            serve_hackernews() as hn,
            serve_receiver(queue=[503] * REFUSALS) as receiver,
        ):
            env = {
                "EXPORTHUB_DATABASE_URL": database_url,
                "EXPORTHUB_HACKERNEWS_API": hn.base_url,
                "EXPORTHUB_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK_ONLY,
                "EXPORTHUB_WEBHOOK_RETRY_DELAY": "0.1",
                "EXPORTHUB_WEBHOOK_MAX_ATTEMPTS": "20",
                "EXPORTHUB_PROGRESS_INTERVAL": "60",
                "EXPORTHUB_WORKER_CONCURRENCY": "1",
            }
            gate = hn.hold(HELD_ITEM)
            with run_server(data_dir, **env) as server, run_worker(data_dir, **env):
                alice = server.create_user("alice@example.com")
                async with httpx.AsyncClient(base_url=server.url) as http:
                    api = UserApi(http, alice["api_key"])
                    webhook = await api.register(receiver.url)
                    for _ in range(JOBS):
                        await api.job()
                    await eventually(
                        lambda: _count(hn.requests, HELD_ITEM), (2).__le__, WAIT
                    )
                    gate.set()
                    deliveries = await api.ended_deliveries(
                        webhook["id"], JOBS * EVENTS_PER_JOB, within=60
                    )
    sent = Counter(
        (r.delivery, r.headers["exporthub-attempt"]) for r in receiver.requests
    )
    recorded = Counter(
        (d["id"], str(a["attempt"])) for d in deliveries for a in d["attempts"]
    )
    assert len(deliveries) == JOBS * EVENTS_PER_JOB
    assert [d["status"] for d in deliveries] == ["delivered"] * len(deliveries)
    assert set(sent.values()) == {1}
    assert sent == recorded
    assert len(receiver.delivered()) == len(deliveries)
    assert " done: " in (data_dir / "worker.log").read_text()


async def _count(items: list[int], item: int) -> int:
    return items.count(item)
