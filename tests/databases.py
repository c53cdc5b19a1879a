"""Throwaway PostgreSQL databases on the local server, for tests.

Each test gets a database of its own, created on 127.0.0.1:5432 and dropped
afterwards. When PostgreSQL is not there the test is skipped, except in CI
(``CI=true``), where it fails: CI must not pass by testing nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"
POSTGRES_ADMIN_DB = "test"
CONNECT_TIMEOUT = 5.0


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            host=POSTGRES_HOST,
            port=POSTGRES_PORT,
            user=POSTGRES_USER,
            database=POSTGRES_ADMIN_DB,
            timeout=CONNECT_TIMEOUT,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL on {POSTGRES_HOST}:{POSTGRES_PORT} unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@asynccontextmanager
async def postgres_database(prefix: str = "exporthub_test") -> AsyncIterator[str]:
    """Create an empty database; yields its ``postgresql://`` URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield (f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}")
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
