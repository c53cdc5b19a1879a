"""Run the real exporthub server as a subprocess for end-to-end tests.

By default a server keeps everything in its data directory (SQLite, memory
broker). ``EXPORTHUB_TEST_DATABASE=postgres`` gives every server a fresh
PostgreSQL database instead, and ``EXPORTHUB_TEST_BROKER=redis`` a Redis
key prefix of its own, so the same tests run against those backends; a test
that passes its own ``EXPORTHUB_DATABASE_URL`` or ``EXPORTHUB_BROKER`` (to
share them between servers) keeps it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

import backends
from exporthub.store import Database

EXPORTHUB = [sys.executable, "-m", "exporthub.cli"]
STARTUP_TIMEOUT = 20.0
TEST_DATABASE = "EXPORTHUB_TEST_DATABASE"
TEST_BROKER = "EXPORTHUB_TEST_BROKER"
WORKER_STARTED = "exporthub.exports.worker: worker "
"""The start of the log line a worker writes once it claims jobs."""


WEBSOCKET_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
"""RFC 6455's example key; the server must answer it with
:data:`WEBSOCKET_ACCEPT`."""
WEBSOCKET_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def websocket_request(host: str) -> bytes:
    """The opening handshake of a WebSocket to the channel path."""
    return (
        f"GET /connection/websocket HTTP/1.1\r\nHost: {host}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WEBSOCKET_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    """A started ``exporthub serve`` and the environment it runs with."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``exporthub ARGS`` against the same data directory."""
        return subprocess.run(
            [*EXPORTHUB, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def create_user(self, email: str) -> dict[str, str]:
        result = self.cli("user", "create", email)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def database_url(self) -> str:
        return self.env.get(
            "EXPORTHUB_DATABASE_URL", f"sqlite:///{self.data_dir / 'exporthub.db'}"
        )

    def execute(self, statement: str, **params: Any) -> None:
        """Run one SQL statement, with ``:name`` parameters, on the server's
        database, whichever kind it is."""

        async def go() -> None:
            db = Database(self.database_url)
            try:
                async with db.engine.begin() as conn:
                    await conn.execute(text(statement), params)
            finally:
                await db.close()

        backends.run(go())

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of ``table``, straight from the server's database."""
        url = self.database_url
        if url.startswith("sqlite:///"):
            with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
                return conn.execute(f"SELECT * FROM {table}").fetchall()
        return [
            tuple(row.values()) for row in backends.fetch(url, f"SELECT * FROM {table}")
        ]


# Nothing in a test may reach a real platform: every API base points at the
# discard port on loopback unless a test gives its own fixture server.
NOWHERE = "http://127.0.0.1:9"
PLATFORM_APIS = ("HACKERNEWS", "YOUTUBE", "REDDIT", "BLUESKY", "MASTODON", "GITHUB")


def server_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTHUB_")}
    env.update({f"EXPORTHUB_{name}_API": NOWHERE for name in PLATFORM_APIS})
    env.update(
        {
            "EXPORTHUB_DATA_DIR": str(data_dir),
            "EXPORTHUB_TOKEN_SECRET": "test-secret-of-sufficient-length-0123456789",
            "EXPORTHUB_LOG_LEVEL": "INFO",
            # Tests hold jobs at fixture gates; shutting down need not wait.
            "EXPORTHUB_SHUTDOWN_GRACE": "1",
            # A test that stops its server while its own event loop waits
            # cannot answer the close: its clients need not be waited for.
            "EXPORTHUB_DRAIN_TIMEOUT": "1",
        }
    )
    env.update(overrides)
    return env


@contextmanager
def run_server(
    data_dir: Path, *args: str, port: int | None = None, **overrides: str
) -> Iterator[RunningServer]:
    """Start ``exporthub serve ARGS`` on ``port`` (a free one by default),
    on the test run's backends; always stopped afterwards."""
    with (
        own_backends(data_dir, overrides),
        start_server(data_dir, *args, port=port, **overrides) as server,
    ):
        yield server


@contextmanager
def start_server(
    data_dir: Path, *args: str, port: int | None = None, **overrides: str
) -> Iterator[RunningServer]:
    """Start ``exporthub serve ARGS`` with exactly the settings given (on
    ``port``, or a free one); always stopped afterwards."""
    port = port or free_port()
    env = server_env(data_dir, **overrides)
    env.setdefault("EXPORTHUB_PUBLIC_URL", f"http://127.0.0.1:{port}")
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*EXPORTHUB, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(process, port, env, data_dir, log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop(process)


def spawn_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``exporthub worker`` with ``env``; stop it with :func:`stop`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*EXPORTHUB, "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def run_worker(data_dir: Path, **overrides: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``exporthub worker`` with exactly the settings given; returns
    once it claims jobs, and always stops it afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"worker-{time.monotonic_ns()}.log"
    process = spawn_worker(server_env(data_dir, **overrides), log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while WORKER_STARTED not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"exporthub worker did not start:\n{log_path.read_text()}"
                )
            time.sleep(0.05)
        yield process
    finally:
        stop(process)


@dataclass
class _Backends:
    """The database and key prefix made for one data directory."""

    settings: dict[str, str]
    running: int = 0


_OWN_BACKENDS: dict[Path, _Backends] = {}


@contextmanager
def own_backends(data_dir: Path, overrides: dict[str, str]) -> Iterator[None]:
    """Add the data directory's own PostgreSQL database and Redis prefix to
    ``overrides`` when the test run asks for them, for as long as a server
    runs. They are made on first use, so a server started again on the same
    data directory finds its data, and removed by :func:`release_backends`
    once no server uses them."""
    own = _OWN_BACKENDS.setdefault(data_dir.resolve(), _Backends({}))
    if (
        os.environ.get(TEST_DATABASE) == "postgres"
        and "EXPORTHUB_DATABASE_URL" not in overrides
    ):
        if "EXPORTHUB_DATABASE_URL" not in own.settings:
            own.settings["EXPORTHUB_DATABASE_URL"] = backends.create_database()
        overrides["EXPORTHUB_DATABASE_URL"] = own.settings["EXPORTHUB_DATABASE_URL"]
    if os.environ.get(TEST_BROKER) == "redis" and "EXPORTHUB_BROKER" not in overrides:
        if "EXPORTHUB_BROKER_PREFIX" not in own.settings:
            own.settings["EXPORTHUB_BROKER_PREFIX"] = backends.key_prefix()
        overrides["EXPORTHUB_BROKER"] = backends.REDIS_URL
        overrides["EXPORTHUB_BROKER_PREFIX"] = own.settings["EXPORTHUB_BROKER_PREFIX"]
    own.running += 1
    try:
        yield
    finally:
        own.running -= 1


def release_backends() -> None:
    """Drop the databases and delete the keys that :func:`own_backends`
    made and no running server uses any more."""
    for data_dir, own in list(_OWN_BACKENDS.items()):
        if own.running:
            continue
        del _OWN_BACKENDS[data_dir]
        if "EXPORTHUB_DATABASE_URL" in own.settings:
            backends.drop_database(own.settings["EXPORTHUB_DATABASE_URL"])
        if "EXPORTHUB_BROKER_PREFIX" in own.settings:
            backends.clear_keys(own.settings["EXPORTHUB_BROKER_PREFIX"])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _wait_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"exporthub exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"exporthub did not become healthy:\n{server.log()}")
