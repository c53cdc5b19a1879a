"""Schema migrations on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect

import backends
from exporthub.store import Database, metadata
from exporthub.store.migrations import LATEST, current_version, upgrade
from servers import EXPORTHUB, server_env

CONCURRENT_PROCESSES = 3


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exporthub.db'}"
        return
    url = backends.create_database()
    try:
        yield url
    finally:
        backends.drop_database(url)


@pytest.fixture
def reference_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'reference.db'}"
        return
    url = backends.create_database()
    try:
        yield url
    finally:
        backends.drop_database(url)


def describe(conn: Connection) -> dict[str, Any]:
    """Tables, columns, keys and indexes, as the database reports them."""
    found = inspect(conn)
    schema: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        if table == "schema_version":
            continue
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"])
                for c in found.get_columns(table)
            ],
            "primary key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in found.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in found.get_indexes(table)
            ),
            "unique": sorted(
                tuple(u["column_names"]) for u in found.get_unique_constraints(table)
            ),
        }
    return schema


async def schema_of(db: Database) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(describe)


async def test_a_new_database_is_migrated_to_exactly_the_schema_of_schema_py(
    database_url: str, reference_url: str
) -> None:
    migrated, reference = Database(database_url), Database(reference_url)
    try:
        await upgrade(migrated)
        async with reference.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        assert await schema_of(migrated) == await schema_of(reference)
    finally:
        await migrated.close()
        await reference.close()


async def test_upgrading_an_up_to_date_database_applies_nothing(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        first = await upgrade(db)
        second = await upgrade(db)
        version = await current_version(db)
    finally:
        await db.close()
    assert (first, second, version) == ([1, 2], [], LATEST)


async def test_a_database_made_before_migrations_existed_is_adopted(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        applied = await upgrade(db)
        version = await current_version(db)
    finally:
        await db.close()
    assert (applied, version) == ([1, 2], LATEST)


def test_processes_upgrading_together_apply_each_migration_once(
    database_url: str, tmp_path: Path
) -> None:
    env = server_env(tmp_path / "data", EXPORTHUB_DATABASE_URL=database_url)
    processes = [
        subprocess.Popen(
            [*EXPORTHUB, "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CONCURRENT_PROCESSES)
    ]
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    assert sorted(o["applied"] for o in outputs) == [[], [], [1, 2]]
    assert {o["version"] for o in outputs} == {LATEST}
