"""The real Redis and PostgreSQL the tests use, and throwaway space in them.

Both run on this machine's loopback: every test run gets its own Redis key
prefix and its own PostgreSQL databases (``exporthub_test_<random>``), and
removes them afterwards. When a service is not reachable the tests that need
it are skipped, or fail when ``CI=true``: CI must not pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

T = TypeVar("T")

REDIS_URL = os.environ.get("EXPORTHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "EXPORTHUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""An administrative connection: test databases are created from it."""
DATABASE_PREFIX = "exporthub_test_"
KEY_PREFIX = "exporthub-test-"
CONNECT_TIMEOUT = 2.0
DEFAULT_REDIS_PORT = 6379


def require(url: str) -> None:
    """Skip the test when ``url``'s service is unreachable; fail under CI."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 0)
    try:
        with socket.create_connection(address, timeout=CONNECT_TIMEOUT):
            return
    except OSError as exc:
        message = f"nothing answers on {address[0]}:{address[1]} ({exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, also from inside
    a running event loop (in a thread of its own)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def create_database() -> str:
    """A new, empty PostgreSQL database; returns its URL."""
    require(POSTGRES_URL)
    name = DATABASE_PREFIX + secrets.token_hex(6)

    async def create() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run(create())
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`, connections and all."""
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith(DATABASE_PREFIX), name

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run(drop())


def fetch(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of ``query`` in the PostgreSQL database at ``url``."""

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(row) for row in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return run(go())


def redis_port() -> int:
    """The port of the test Redis, for proxies put in front of it."""
    return urlsplit(REDIS_URL).port or DEFAULT_REDIS_PORT


def key_prefix() -> str:
    """A Redis key prefix no other test run uses."""
    require(REDIS_URL)
    return KEY_PREFIX + secrets.token_hex(6)


def clear_keys(prefix: str) -> int:
    """Delete every Redis key under ``prefix``; returns how many."""
    assert prefix.startswith(KEY_PREFIX), prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}.*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration; its URL."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
