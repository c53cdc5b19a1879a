"""Client worker processes of the load generator.

The runner starts a few of these (one per spare core) and drives them over a
pipe with small commands: open your share of the connections, start or stop
recording, report how much arrived, hand over the records, close. A worker
holds only connections; it never publishes, so what it measures is the
server's delivery.

A worker stops by itself when the pipe closes or its lifetime runs out, so
a crashed runner leaves no load behind.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import common
from protocols import CLIENTS, Recorder
from wsclient import open_socket


@dataclass
class WorkerSpec:
    """What one worker connects: every ``workers``-th client from ``index``.

    ``mode`` is ``personal`` (user ``u{i}`` with its five channels) or
    ``fanout`` (client ``f{i}`` on the one fan-out channel).
    """

    index: int
    workers: int
    protocol: str
    port: int
    mode: str
    count: int
    sources: list[str]
    concurrency: int = 200
    connect_timeout: float = 60.0
    lifetime: float = 1200.0
    host: str = common.HOST

    def identities(self) -> list[tuple[str, list[str]]]:
        result = []
        for i in range(self.index, self.count, self.workers):
            if self.mode == "personal":
                user = common.user_name(i)
                result.append((user, common.personal_channels(user)))
            else:
                result.append((f"f{i}", [common.FANOUT_CHANNEL]))
        return result


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.recorder = Recorder()
        self.clients: list[Any] = []
        self.plan: list[tuple[str, list[str], str]] = []

    def prepare(self) -> dict[str, Any]:
        """Sign every token up front, so connecting measures the server."""
        common.use_repo_source()
        from exporthub.realtime.tokens import issue

        started = time.perf_counter()
        for user, channels in self.spec.identities():
            token = ""
            if self.spec.protocol != "raw":
                token = issue(
                    common.SECRET, user, ttl=common.TOKEN_TTL, channels=channels
                )
            self.plan.append((user, channels, token))
        return {"clients": len(self.plan), "seconds": time.perf_counter() - started}

    async def connect(self) -> dict[str, Any]:
        spec = self.spec
        cls = CLIENTS[spec.protocol]
        loop = asyncio.get_running_loop()
        host_header = f"{spec.host}:{spec.port}"
        semaphore = asyncio.Semaphore(spec.concurrency)
        errors: Counter[str] = Counter()
        latencies: list[float] = []
        finished: list[float] = []

        async def open_one(i: int, channels: list[str], token: str) -> None:
            async with semaphore:
                begin = time.perf_counter()
                client = None
                try:
                    async with asyncio.timeout(spec.connect_timeout):
                        source = spec.sources[i % len(spec.sources)]
                        sock = await open_socket(spec.host, spec.port, source)
                        _, client = await loop.create_connection(
                            lambda: cls(host_header, self.recorder, token, channels),
                            sock=sock,
                        )
                        await client.ready
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                    if client is not None:
                        client.abort()
                    return
                end = time.perf_counter()
                latencies.append((end - begin) * 1000.0)
                finished.append(time.time())
                self.clients.append(client)

        started = time.time()
        await asyncio.gather(
            *(open_one(i, ch, tok) for i, (_, ch, tok) in enumerate(self.plan))
        )
        return {
            "ok": len(latencies),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "started": started,
            "finished": max(finished) if finished else time.time(),
            "latencies_ms": latencies,
        }

    async def close(self) -> dict[str, Any]:
        """Drop every connection at once (TCP reset): nothing is measured
        any more, and a reset leaves no TIME_WAIT on the loopback ports nor
        ten thousand closing handshakes for the server to finish."""
        clients, self.clients = self.clients, []
        for client in clients:
            client.abort()
        pending = [c.done for c in clients if not c.done.done()]
        if pending:
            await asyncio.wait(pending, timeout=10.0)
        return {"closed": len(clients)}

    def collect(self) -> dict[str, Any]:
        rec = self.recorder
        return {
            "count": rec.count,
            "sent_at": rec.sent_at.tolist(),
            "latencies_ms": rec.latencies.tolist(),
            "seqs": rec.seqs,
        }

    async def handle(self, command: str, args: dict[str, Any]) -> Any:
        if command == "prepare":
            result = self.prepare()
            # Thousands of long-lived connection objects make every full
            # collection slower; the client's cost must not grow with N,
            # and a bounded run can afford to keep its few cycles.
            gc.collect()
            gc.freeze()
            gc.disable()
            return result
        if command == "connect":
            return await self.connect()
        if command == "record":
            self.recorder.reset(bool(args.get("active", True)))
            return {"ok": True}
        if command == "status":
            return {"count": self.recorder.count, "open": len(self.clients)}
        if command == "collect":
            return self.collect()
        if command == "close":
            return await self.close()
        raise ValueError(f"unknown command {command!r}")


async def _serve(conn: Connection, spec: WorkerSpec) -> None:
    worker = Worker(spec)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.lifetime
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        ready = await loop.run_in_executor(None, conn.poll, min(remaining, 1.0))
        if not ready:
            continue
        try:
            command, args = conn.recv()
        except EOFError:
            break
        if command == "exit":
            break
        try:
            result: Any = await worker.handle(command, args)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        conn.send(result)
    await worker.close()


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of a worker process."""
    common.install_fast_loop()
    asyncio.run(_serve(conn, spec))
