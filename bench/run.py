"""Run the channel-server workloads against exporthub and its peers.

Each workload runs on every server in turn, each time on a freshly started
server process, with the client load in separate worker processes and the
publisher in this one, all on loopback. One table per workload is printed
with the servers side by side; the figures go to
``bench/results/<timestamp>.json`` and ``bench/results/latest.md``.

Workloads:

1. personal channels: N clients with their five channels each, events at
   ``--rate``/s to random users' ``exports:`` channels; delivered msgs/s,
   publish-to-receive latency, server CPU and RSS per connection.
2. fan-out: ``--fanout-clients`` subscribers of one channel; time until the
   last one has a publication, then deliveries/s of a stream.
3. connect storm: N connections as fast as the server takes them, each
   with JWT verification and five server-side subscriptions.

Usage::

    python bench/run.py --workloads 1,2,3 --clients 1000,5000,10000
    python bench/run.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import common
import httpx
import orjson
import psutil
from loadgen import WorkerSpec, worker_main

RESULTS_DIR = common.BENCH_DIR / "results"
NODE_PEER_DIR = common.BENCH_DIR / "peers" / "node-socketio"
WORKER_TIMEOUT = 300.0


# -- servers ----------------------------------------------------------------


@dataclass(frozen=True)
class ServerKind:
    """How to start one server under test and which protocol it speaks."""

    name: str
    protocol: str
    port: int
    api_port: int
    command: tuple[str, ...]
    python: bool

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((self.port, self.api_port)))


def server_kinds(gc_mode: str | None = None) -> dict[str, ServerKind]:
    """The servers; with ``gc_mode`` the Python ones run under gc_probe.py."""
    kinds = _plain_server_kinds()
    if gc_mode is None:
        return kinds
    probe = (sys.executable, str(common.BENCH_DIR / "gc_probe.py"), gc_mode)
    return {
        name: replace(kind, command=probe + kind.command[1:]) if kind.python else kind
        for name, kind in kinds.items()
    }


def _plain_server_kinds() -> dict[str, ServerKind]:
    py = sys.executable
    bench = common.BENCH_DIR
    return {
        "exporthub": ServerKind(
            "exporthub",
            "centrifugo",
            18080,
            18080,
            (py, str(bench / "servers" / "exporthub_channels.py"), "--port", "18080"),
            True,
        ),
        "python-socketio": ServerKind(
            "python-socketio",
            "socketio",
            18081,
            18081,
            (py, str(bench / "peers" / "python_socketio_server.py"), "--port", "18081"),
            True,
        ),
        "node-socketio": ServerKind(
            "node-socketio",
            "socketio",
            18082,
            18082,
            ("node", str(NODE_PEER_DIR / "server.js"), "--port", "18082"),
            False,
        ),
        "websockets-ceiling": ServerKind(
            "websockets-ceiling",
            "raw",
            18083,
            18084,
            (
                py,
                str(bench / "peers" / "ws_broadcast_server.py"),
                "--port",
                "18083",
                "--api-port",
                "18084",
            ),
            True,
        ),
    }


class ServerProcess:
    """One server under test: started by the runner, measured with psutil on
    its own pid (children included), stopped by that pid only."""

    def __init__(self, kind: ServerKind, log_path: Path) -> None:
        self.kind = kind
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.proc: psutil.Process | None = None
        self.gc_path = log_path.with_suffix(".gc.json")

    def gc_stats(self) -> dict[str, Any] | None:
        """What gc_probe.py recorded, once the server has exited."""
        try:
            return dict(json.loads(self.gc_path.read_text()))
        except (OSError, ValueError):
            return None

    async def start(self, startup_s: float = 30.0) -> None:
        self._spawn()
        assert self.popen is not None
        deadline = time.monotonic() + startup_s
        for port in self.kind.ports:
            while not _accepts(port):
                if self.popen.poll() is not None:
                    raise RuntimeError(
                        f"{self.kind.name} exited with {self.popen.returncode};"
                        f" see {self.log_path}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind.name} did not listen on {port}")
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)

    def _spawn(self) -> None:
        for port in self.kind.ports:
            if not common.port_is_free(port):
                raise RuntimeError(f"port {port} is busy; is an old server running?")
        env = dict(os.environ)
        env["BENCH_SECRET"] = common.SECRET
        env["BENCH_API_KEY"] = common.API_KEY
        env["BENCH_GC_STATS"] = str(self.gc_path)
        self.gc_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.kind.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(common.REPO_ROOT),
                start_new_session=True,
            )
        self.proc = psutil.Process(self.popen.pid)

    def _tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for i, proc in enumerate(self._tree()):
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
            if i == 0:
                total += t.children_user + t.children_system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((common.HOST, port)) == 0


class Profiler:
    """py-spy recording the server while a measured phase runs."""

    def __init__(self, pid: int, path: Path, rate: int = 250) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(
            [
                _py_spy(),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(path),
                "--nonblocking",
                "--duration",
                "600",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


# -- client workers -----------------------------------------------------------


class WorkerPool:
    """The client processes, driven with one command at a time."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, spec), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    async def call(
        self, command: str, wait_s: float = WORKER_TIMEOUT, **args: Any
    ) -> list[Any]:
        for conn in self.conns:
            conn.send((command, args))
        replies = await asyncio.gather(
            *(asyncio.to_thread(_receive, conn, wait_s) for conn in self.conns)
        )
        for reply in replies:
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"worker failed on {command}: {reply['error']}")
        return replies

    async def total_received(self) -> int:
        return sum(r["count"] for r in await self.call("status", wait_s=30))

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await self.call("close", wait_s=60)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("exit", {}))
        for proc in self.procs:
            await asyncio.to_thread(proc.join, 15)
            if proc.is_alive():
                proc.terminate()
                await asyncio.to_thread(proc.join, 5)


def _receive(conn: Connection, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"worker did not answer within {timeout}s")
    return conn.recv()


# -- publisher --------------------------------------------------------------


@dataclass
class PublishLog:
    requests: int = 0
    publications: int = 0
    errors: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)


class Publisher:
    """Posts to a server's publish API over a few keep-alive connections."""

    def __init__(self, port: int, max_inflight: int = 8) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"http://{common.HOST}:{port}",
            headers={"X-API-Key": common.API_KEY, "Content-Type": "application/json"},
            limits=httpx.Limits(
                max_connections=max_inflight, max_keepalive_connections=max_inflight
            ),
            timeout=30.0,
        )
        self.max_inflight = max_inflight
        self.seq = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _post(self, log: PublishLog, path: str, body: dict[str, Any]) -> None:
        try:
            response = await self.client.post(path, content=orjson.dumps(body))
            if response.status_code != 200 or b'"error"' in response.content[:200]:
                log.errors += 1
        except httpx.HTTPError:
            log.errors += 1

    async def send(self, log: PublishLog, channels: list[str]) -> int:
        """One request: ``publish`` for one channel, ``broadcast`` for more."""
        self.seq += 1
        seq = self.seq
        ts = time.time()
        data = common.payload(seq, ts)
        log.sent_at[seq] = ts
        log.requests += 1
        log.publications += len(channels)
        if len(channels) == 1:
            body: dict[str, Any] = {"channel": channels[0], "data": data}
            await self._post(log, "/api/publish", body)
        else:
            await self._post(
                log, "/api/broadcast", {"channels": channels, "data": data}
            )
        return seq

    async def stream(
        self,
        rate: float,
        duration: float,
        choose: Callable[[], str],
        tick: float = 0.01,
        max_batch: int = 500,
    ) -> PublishLog:
        """``rate`` publications a second for ``duration`` seconds, batched
        per ``tick`` into one broadcast; at most ``max_inflight`` requests
        outstanding, so a slow server slows the publisher down instead of
        piling requests up (the log shows the rate actually reached)."""
        log = PublishLog()
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.max_inflight)
        tasks: set[asyncio.Task[int]] = set()
        start = loop.time()
        queued = 0
        while (elapsed := loop.time() - start) < duration:
            due = min(int(elapsed * rate) - queued, max_batch)
            if due > 0:
                queued += due
                channels = [choose() for _ in range(due)]
                await slots.acquire()
                task = asyncio.create_task(self.send(log, channels))
                task.add_done_callback(lambda _t: slots.release())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(tick)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        return log


# -- measurements ------------------------------------------------------------


@dataclass
class Options:
    workloads: list[int]
    clients: list[int]
    servers: list[str]
    duration: float
    warmup: float
    rate: float
    fanout_clients: int
    fanout_pubs: int
    fanout_rate: float
    client_procs: int
    concurrency: int
    storm_concurrency: int
    profile: bool
    quick: bool
    repeat: int = 3
    profile_rate: int = 250
    server_gc: str | None = None


class Bench:
    def __init__(self, options: Options, stamp: str) -> None:
        self.options = options
        self.stamp = stamp
        self.kinds = server_kinds(options.server_gc)
        limits = common.kernel_limits()
        biggest = max([*options.clients, options.fanout_clients])
        self.sources = common.source_addresses(biggest, limits["ephemeral_ports"])
        self.log_dir = RESULTS_DIR / "logs" / stamp
        self.last_gc: dict[str, Any] | None = None
        self.profile_dir = RESULTS_DIR / "profiles" / stamp

    def specs(self, kind: ServerKind, mode: str, count: int, conc: int) -> list[Any]:
        workers = max(1, min(self.options.client_procs, count))
        return [
            WorkerSpec(
                index=i,
                workers=workers,
                protocol=kind.protocol,
                port=kind.port,
                mode=mode,
                count=count,
                sources=self.sources,
                concurrency=conc,
            )
            for i in range(workers)
        ]

    @contextlib.asynccontextmanager
    async def scenario(
        self, kind: ServerKind, label: str, mode: str, count: int, conc: int
    ) -> Any:
        server = ServerProcess(kind, self.log_dir / f"{kind.name}-{label}.log")
        pool: WorkerPool | None = None
        publisher: Publisher | None = None
        try:
            await server.start()
            pool = WorkerPool(self.specs(kind, mode, count, conc))
            await pool.call("prepare")
            publisher = Publisher(kind.api_port)
            yield server, pool, publisher
        finally:
            if publisher is not None:
                await publisher.aclose()
            if pool is not None:
                await pool.shutdown()
            server.stop()
            self.last_gc = server.gc_stats()

    @contextlib.contextmanager
    def profiling(self, server: ServerProcess, name: str) -> Iterator[None]:
        profiler = None
        if self.options.profile and server.kind.python and server.proc is not None:
            path = self.profile_dir / f"{name}.txt"
            profiler = Profiler(server.proc.pid, path, self.options.profile_rate)
            time.sleep(0.5)  # py-spy attaches before the phase begins.
        try:
            yield
        finally:
            if profiler is not None:
                profiler.stop()

    async def connect(self, pool: WorkerPool) -> dict[str, Any]:
        replies = await pool.call("connect")
        latencies = [x for r in replies for x in r["latencies_ms"]]
        errors: dict[str, int] = {}
        for r in replies:
            for key, value in r["errors"].items():
                errors[key] = errors.get(key, 0) + value
        started = min(r["started"] for r in replies)
        finished = max(r["finished"] for r in replies)
        ok = sum(r["ok"] for r in replies)
        if ok == 0:
            raise RuntimeError(f"no client connected: {errors}")
        return {
            "connected": ok,
            "failed": sum(r["failed"] for r in replies),
            "errors": errors,
            "seconds": finished - started,
            "per_second": ok / (finished - started) if finished > started else None,
            "latency_ms": common.summarize(latencies),
        }

    async def wait_for(
        self, pool: WorkerPool, target: int, limit_s: float, idle_s: float = 3.0
    ) -> int:
        """Poll until ``target`` deliveries arrived, nothing arrived for
        ``idle_s`` seconds, or ``limit_s`` passed; returns the count."""
        deadline = time.monotonic() + limit_s
        last, last_change = -1, time.monotonic()
        while True:
            count = await pool.total_received()
            now = time.monotonic()
            if count >= target or now > deadline:
                return count
            if count != last:
                last, last_change = count, now
            elif now - last_change > idle_s:
                return count
            await asyncio.sleep(0.02)

    # -- workload 1 ----------------------------------------------------------

    async def personal(self, kind: ServerKind, n: int) -> dict[str, Any]:
        opts = self.options
        async with self.scenario(kind, f"w1-{n}", "personal", n, opts.concurrency) as (
            server,
            pool,
            publisher,
        ):
            rss_before = server.rss()
            connect = await self.connect(pool)
            await asyncio.sleep(1.0)
            rss_after = server.rss()
            users = [common.user_name(i) for i in range(n)]

            def choose() -> str:
                return f"exports:{random.choice(users)}"

            await pool.call("record", active=False)
            await publisher.stream(opts.rate, opts.warmup, choose)
            await asyncio.sleep(0.5)
            await pool.call("record", active=True)
            cpu0 = server.cpu_seconds()
            t0 = time.monotonic()
            with self.profiling(server, f"{kind.name}-w1-{n}"):
                log = await publisher.stream(opts.rate, opts.duration, choose)
                expected = log.publications * connect["connected"] // n
                await self.wait_for(pool, expected, limit_s=15.0)
            cpu = server.cpu_seconds() - cpu0
            window = time.monotonic() - t0
            replies = await pool.call("collect")
        latencies = [x for r in replies for x in r["latencies_ms"]]
        delivered = len(latencies)
        return {
            "server": kind.name,
            "clients": n,
            "connect": connect,
            "published": log.publications,
            "publish_requests": log.requests,
            "publish_errors": log.errors,
            "published_per_s": log.publications / opts.duration,
            "delivered": delivered,
            "delivered_per_s": delivered / opts.duration,
            "lost": max(0, expected - delivered),
            "latency_ms": common.summarize(latencies),
            "cpu_s": cpu,
            "cpu_percent": 100.0 * cpu / window,
            "cpu_us_per_msg": 1e6 * cpu / delivered if delivered else None,
            "rss_before_mb": rss_before / 2**20,
            "rss_after_mb": rss_after / 2**20,
            "rss_kb_per_conn": (rss_after - rss_before) / 1024 / connect["connected"]
            if connect["connected"]
            else None,
        }

    # -- workload 2 ----------------------------------------------------------

    async def fanout(self, kind: ServerKind) -> dict[str, Any]:
        opts = self.options
        n = opts.fanout_clients
        channel = [common.FANOUT_CHANNEL]
        async with self.scenario(kind, "w2", "fanout", n, opts.concurrency) as (
            server,
            pool,
            publisher,
        ):
            rss_before = server.rss()
            connect = await self.connect(pool)
            subscribers = connect["connected"]
            await asyncio.sleep(1.0)
            rss_after = server.rss()

            # One publication: how long until the last subscriber has it.
            await pool.call("record", active=True)
            log = PublishLog()
            seq = await publisher.send(log, channel)
            await self.wait_for(pool, subscribers, limit_s=30.0)
            single = await pool.call("collect")
            sent = log.sent_at[seq]
            lasts = [r["seqs"][seq][2] for r in single if seq in r["seqs"]]
            firsts = [r["seqs"][seq][1] for r in single if seq in r["seqs"]]
            got = sum(int(r["seqs"][seq][0]) for r in single if seq in r["seqs"])
            one = {
                "delivered": got,
                "first_ms": (min(firsts) - sent) * 1000 if firsts else None,
                "last_ms": (max(lasts) - sent) * 1000 if lasts else None,
                "latency_ms": common.summarize(
                    [x for r in single for x in r["latencies_ms"]]
                ),
            }

            # A stream: fanout_pubs publications at fanout_rate a second, or
            # back to back (each after the previous one's reply) when 0.
            await asyncio.sleep(0.5)
            await pool.call("record", active=True)
            log = PublishLog()
            cpu0 = server.cpu_seconds()
            t0 = time.monotonic()
            with self.profiling(server, f"{kind.name}-w2-{n}"):
                for _ in range(opts.fanout_pubs):
                    await publisher.send(log, channel)
                    if opts.fanout_rate > 0:
                        await asyncio.sleep(1.0 / opts.fanout_rate)
                expected = opts.fanout_pubs * subscribers
                await self.wait_for(pool, expected, limit_s=60.0)
            cpu = server.cpu_seconds() - cpu0
            window = time.monotonic() - t0
            replies = await pool.call("collect")
        delivered = sum(r["count"] for r in replies)
        last_receive = max(
            (entry[2] for r in replies for entry in r["seqs"].values()), default=0.0
        )
        first_sent = min(log.sent_at.values())
        completion = []
        for s, ts in log.sent_at.items():
            ends = [r["seqs"][s][2] for r in replies if s in r["seqs"]]
            if ends:
                completion.append((max(ends) - ts) * 1000)
        elapsed = last_receive - first_sent
        return {
            "server": kind.name,
            "subscribers": subscribers,
            "connect": connect,
            "single": one,
            "stream_publications": opts.fanout_pubs,
            "stream_rate": opts.fanout_rate,
            "stream_delivered": delivered,
            "stream_expected": opts.fanout_pubs * subscribers,
            "stream_seconds": elapsed,
            "deliveries_per_s": delivered / elapsed if elapsed > 0 else None,
            "completion_ms": common.summarize(completion),
            "latency_ms": common.summarize(
                [x for r in replies for x in r["latencies_ms"]]
            ),
            "cpu_s": cpu,
            "cpu_percent": 100.0 * cpu / window,
            "cpu_us_per_delivery": 1e6 * cpu / delivered if delivered else None,
            "rss_kb_per_conn": (rss_after - rss_before) / 1024 / subscribers
            if subscribers
            else None,
        }

    # -- workload 3 ----------------------------------------------------------

    async def storm(self, kind: ServerKind, n: int) -> dict[str, Any]:
        opts = self.options
        async with self.scenario(
            kind, f"w3-{n}", "personal", n, opts.storm_concurrency
        ) as (server, pool, _publisher):
            rss_before = server.rss()
            cpu0 = server.cpu_seconds()
            with self.profiling(server, f"{kind.name}-w3-{n}"):
                connect = await self.connect(pool)
            cpu = server.cpu_seconds() - cpu0
            await asyncio.sleep(1.0)
            rss_after = server.rss()
        ok = connect["connected"]
        return {
            "server": kind.name,
            "clients": n,
            "connect": connect,
            "connections_per_s": connect["per_second"],
            "cpu_s": cpu,
            "cpu_ms_per_conn": 1e3 * cpu / ok if ok else None,
            "rss_kb_per_conn": (rss_after - rss_before) / 1024 / ok if ok else None,
        }

    # -- the run -----------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        opts = self.options
        results: dict[str, list[dict[str, Any]]] = {}
        kinds = [self.kinds[name] for name in opts.servers]
        plan: list[tuple[str, Callable[[], Any]]] = []
        for w in opts.workloads:
            if w == 1:
                for n in opts.clients:
                    for kind in kinds:
                        plan.append(("1", _bind(self.personal, kind, n)))
            elif w == 2:
                for kind in kinds:
                    plan.append(("2", _bind(self.fanout, kind)))
            elif w == 3:
                for n in opts.clients:
                    for kind in kinds:
                        plan.append(("3", _bind(self.storm, kind, n)))
        for workload, step in plan:
            started = time.monotonic()
            repeats = opts.repeat if workload in REPEATED else 1
            rows = []
            for _ in range(repeats):
                self.last_gc = None
                try:
                    rows.append(await step())
                    if self.last_gc is not None:
                        rows[-1]["server_gc"] = self.last_gc
                except Exception as exc:
                    row = {"error": f"{type(exc).__name__}: {exc}"}
                    row.update(getattr(step, "labels", {}))
                    rows.append(row)
            row = _median_row(workload, rows)
            row["wall_s"] = time.monotonic() - started
            results.setdefault(workload, []).append(row)
            print(
                f"  w{workload} {_row_label(row)}: {_brief(workload, row)}", flush=True
            )
        return results


# Short workloads whose figures swing with when the server's collector runs:
# these are repeated and the run with the median headline figure is kept.
REPEATED = {"2": "deliveries_per_s", "3": "connections_per_s"}


def _median_row(workload: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    key = REPEATED.get(workload)
    good = [r for r in rows if "error" not in r and r.get(key) is not None]
    if key is None or len(rows) == 1 or not good:
        return rows[0] if not good else good[0]
    good.sort(key=lambda r: r[key])
    chosen = dict(good[(len(good) - 1) // 2])
    chosen["runs"] = {key: [r[key] for r in good], "failed_runs": len(rows) - len(good)}
    return chosen


def _bind(method: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    async def step() -> Any:
        return await method(*args)

    labels: dict[str, Any] = {"server": args[0].name}
    if len(args) > 1:
        labels["clients"] = args[1]
    step.labels = labels  # type: ignore[attr-defined]
    return step


def _row_label(row: dict[str, Any]) -> str:
    n = row.get("clients", row.get("subscribers", ""))
    return f"{row.get('server')} n={n}"


def _brief(workload: str, row: dict[str, Any]) -> str:
    if "error" in row:
        return f"ERROR {row['error']}"
    if workload == "1":
        lat = row["latency_ms"]
        return (
            f"{row['delivered_per_s']:.0f} msg/s p50={_f(lat['p50'])}ms "
            f"p99={_f(lat['p99'])}ms cpu={row['cpu_s']:.2f}s"
        )
    if workload == "2":
        return (
            f"last={_f(row['single']['last_ms'])}ms "
            f"{_f(row['deliveries_per_s'], 0)} deliveries/s"
        )
    return f"{_f(row['connections_per_s'], 0)} conn/s"


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- report ----------------------------------------------------------------------


def render_markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    out = [
        f"Run {meta['timestamp']} on {meta['machine']['cpus']} cores "
        f"({meta['machine']['cpu']}), {meta['client_procs']} client processes; "
        f"exporthub {meta['exporthub_commit']}.",
        "",
    ]
    results = data["results"]
    if "1" in results:
        opts = meta["options"]
        out += [
            f"### 1. Personal channels ({opts['rate']:.0f} events/s to random "
            f"users' `exports:` channel, {opts['duration']:.0f} s)",
            "",
            "| clients | server | connected | delivered/s | p50 ms | p99 ms | "
            "max ms | server CPU s | CPU % | CPU µs/msg | RSS KB/conn |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["1"]:
            if "error" in r:
                out.append(
                    f"| {r.get('clients')} | {r.get('server')} | error: "
                    f"{r['error'][:60]} |||||||||"
                )
                continue
            lat = r["latency_ms"]
            out.append(
                f"| {r['clients']} | {r['server']} | {r['connect']['connected']} | "
                f"{r['delivered_per_s']:.0f} | {_f(lat['p50'])} | {_f(lat['p99'])} | "
                f"{_f(lat['max'])} | {r['cpu_s']:.2f} | {r['cpu_percent']:.0f} | "
                f"{_f(r['cpu_us_per_msg'], 0)} | {_f(r['rss_kb_per_conn'])} |"
            )
        out.append("")
    if "2" in results:
        opts = meta["options"]
        out += [
            f"### 2. Fan-out (one channel; then {opts['fanout_pubs']} publications "
            + (
                f"at {opts['fanout_rate']:.0f}/s)"
                if opts["fanout_rate"] > 0
                else "back to back)"
            ),
            "",
            "| server | subscribers | 1st pub: first ms | 1st pub: last ms | "
            "deliveries/s | runs | pub complete p50 ms | max ms | server CPU s | "
            "CPU µs/delivery | RSS KB/conn |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in results["2"]:
            if "error" in r:
                out.append(f"| {r.get('server')} | error: {r['error'][:60]} ||||||||")
                continue
            comp = r["completion_ms"]
            out.append(
                f"| {r['server']} | {r['subscribers']} | "
                f"{_f(r['single']['first_ms'])} | {_f(r['single']['last_ms'])} | "
                f"{_f(r['deliveries_per_s'], 0)} | {_runs(r)} | {_f(comp['p50'])} | "
                f"{_f(comp['max'])} | {r['cpu_s']:.2f} | "
                f"{_f(r['cpu_us_per_delivery'], 1)} | {_f(r['rss_kb_per_conn'])} |"
            )
        out.append("")
    if "3" in results:
        out += [
            "### 3. Connect storm (JWT check + 5 server-side subscriptions each)",
            "",
            "| clients | server | connected | failed | conn/s | runs | "
            "connect p50 ms | p99 ms | server CPU s | CPU ms/conn | RSS KB/conn |",
            "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in results["3"]:
            if "error" in r:
                out.append(
                    f"| {r.get('clients')} | {r.get('server')} | error: "
                    f"{r['error'][:60]} |||||||"
                )
                continue
            c = r["connect"]
            out.append(
                f"| {r['clients']} | {r['server']} | {c['connected']} | "
                f"{c['failed']} | {_f(r['connections_per_s'], 0)} | {_runs(r)} | "
                f"{_f(c['latency_ms']['p50'])} | {_f(c['latency_ms']['p99'])} | "
                f"{r['cpu_s']:.2f} | {_f(r['cpu_ms_per_conn'], 2)} | "
                f"{_f(r['rss_kb_per_conn'])} |"
            )
        out.append("")
    gc_rows = [
        (w, r) for w, rows in results.items() for r in rows if r.get("server_gc")
    ]
    if gc_rows:
        out += [
            "### Server garbage collection "
            f"(`--server-gc {meta['options']['server_gc']}`)",
            "",
            "| workload | server | N | collections gen0/1/2 | GC s | process CPU s |",
            "|---:|---|---:|---|---:|---:|",
        ]
        for w, r in gc_rows:
            g = r["server_gc"]
            n = r.get("clients", r.get("subscribers"))
            counts = "/".join(str(g["collections"][f"gen{i}"]) for i in range(3))
            out.append(
                f"| {w} | {r['server']} | {n} | {counts} | {g['total_s']:.2f} | "
                f"{g['process_cpu_s']:.2f} |"
            )
        out.append("")
    return "\n".join(out)


def _runs(row: dict[str, Any]) -> str:
    """The spread of the repeated runs' headline figure: ``min-max``."""
    runs = row.get("runs")
    if not runs:
        return ""
    values = next(v for k, v in runs.items() if k != "failed_runs")
    text = f"{min(values):.0f}-{max(values):.0f}" if len(values) > 1 else ""
    if runs.get("failed_runs"):
        text += f" ({runs['failed_runs']} failed)"
    return text


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "uvicorn",
        "websockets",
        "starlette",
        "orjson",
        "PyJWT",
        "python-socketio",
        "python-engineio",
        "uvloop",
        "httptools",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    for name in ("socket.io", "engine.io", "ws"):
        package = NODE_PEER_DIR / "node_modules" / name / "package.json"
        with contextlib.suppress(OSError, ValueError):
            found[f"npm:{name}"] = json.loads(package.read_text())["version"]
    node = shutil.which("node")
    if node:
        found["node"] = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return found


def _commit() -> str:
    run = subprocess.run(
        ["git", "-C", str(common.REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.stdout.strip() or "unknown"


def ensure_node_peer() -> None:
    if (NODE_PEER_DIR / "node_modules" / "socket.io").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("node-socketio needs npm: install Node.js 20+")
    print("installing the Node peer's packages (npm ci)...", flush=True)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_PEER_DIR, check=True
    )


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="exporthub channel server vs. its peers, side by side."
    )
    parser.add_argument("--workloads", default="1,2,3")
    parser.add_argument(
        "--clients",
        default="1000,5000,10000",
        help="N for workloads 1 and 3, comma-separated",
    )
    parser.add_argument(
        "--servers",
        default="exporthub,python-socketio,node-socketio,websockets-ceiling",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="measured seconds of workload 1 (covers one keepalive round)",
    )
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="publications per second in workload 1",
    )
    parser.add_argument("--fanout-clients", type=int, default=10000)
    parser.add_argument("--fanout-pubs", type=int, default=20)
    parser.add_argument(
        "--fanout-rate",
        type=float,
        default=0.0,
        help="publications/s of the fan-out stream; 0: back to back",
    )
    parser.add_argument(
        "--client-procs", type=int, default=max(1, min(2, os.cpu_count() or 1))
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="connects in flight per client process (setup)",
    )
    parser.add_argument(
        "--storm-concurrency",
        type=int,
        default=250,
        help="connects in flight per client process (workload 3)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of the Python servers during "
        "the measured phases (slows them; latest.md is kept)",
    )
    parser.add_argument(
        "--profile-rate",
        type=int,
        default=250,
        help="py-spy samples per second with --profile",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs of workloads 2 and 3 per server and size; the median is kept "
        "(default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--server-gc",
        metavar="MODE",
        help="run the Python servers under gc_probe.py with this collector "
        "setting (default, off, freeze, threshold:A:B:C) and record GC time",
    )
    parser.add_argument(
        "--render",
        type=Path,
        help="only rewrite latest.md (and print it) from a results JSON file",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run: 200 clients, short phases",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        data = json.loads(args.render.read_text())
        table = render_markdown(data)
        (RESULTS_DIR / "latest.md").write_text(table + "\n")
        print(table)
        raise SystemExit(0)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.quick:
        args.clients = "200"
        args.duration = min(args.duration, 5.0)
        args.warmup = min(args.warmup, 1.0)
        args.fanout_clients = min(args.fanout_clients, 300)
        args.fanout_pubs = min(args.fanout_pubs, 5)
    known = server_kinds()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in servers:
        if name not in known:
            parser.error(f"unknown server {name!r}; choose from {', '.join(known)}")
    return Options(
        workloads=[int(w) for w in args.workloads.split(",") if w.strip()],
        clients=[int(n) for n in args.clients.split(",") if n.strip()],
        servers=servers,
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        fanout_clients=args.fanout_clients,
        fanout_pubs=args.fanout_pubs,
        fanout_rate=args.fanout_rate,
        client_procs=args.client_procs,
        concurrency=args.concurrency,
        storm_concurrency=args.storm_concurrency,
        profile=args.profile,
        profile_rate=args.profile_rate,
        quick=args.quick,
        repeat=max(1, args.repeat),
        server_gc=args.server_gc,
    )


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    if "node-socketio" in options.servers:
        ensure_node_peer()
    biggest = max([*options.clients, options.fanout_clients])
    nofile = common.raise_nofile(biggest + 4096)
    limits = common.kernel_limits()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    loop_name = common.install_fast_loop()
    bench = Bench(options, stamp)
    print(
        f"file limit {nofile[0]}, ephemeral ports {limits['ephemeral_ports']}, "
        f"somaxconn {limits['somaxconn']}, sources {', '.join(bench.sources)}",
        flush=True,
    )
    if nofile[0] < biggest + 100:
        print(f"warning: file limit {nofile[0]} < {biggest} connections", flush=True)
    started = time.monotonic()
    results = asyncio.run(bench.run())
    data = {
        "meta": {
            "timestamp": stamp,
            "duration_s": time.monotonic() - started,
            "exporthub_commit": _commit(),
            "machine": {
                "cpus": os.cpu_count(),
                "cpu": _cpu_model(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "client_procs": options.client_procs,
            "runner_loop": loop_name,
            "uvicorn": common.uvicorn_options(),
            "nofile": list(nofile),
            "kernel_limits": limits,
            "sysctl_changed": False,
            "source_addresses": bench.sources,
            "versions": _versions(),
            "options": asdict(options),
        },
        "results": results,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    # Profiled and what-if runs are kept but do not replace the latest table.
    suffix = "-profiled" if options.profile else ""
    if options.server_gc is not None:
        suffix += "-gc-" + options.server_gc.replace(":", "_")
    path = RESULTS_DIR / f"{stamp}{suffix}.json"
    path.write_text(json.dumps(data, indent=1))
    table = render_markdown(data)
    if not suffix:
        (RESULTS_DIR / "latest.md").write_text(table + "\n")
    print()
    print(table)
    print(f"results: {path.relative_to(common.REPO_ROOT)}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
