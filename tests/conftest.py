"""Shared test setup: make the helper modules in this folder importable, and
give tests their own space in the real Redis and PostgreSQL."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test alone; its keys are deleted after."""
    import backends

    prefix = backends.key_prefix()
    try:
        yield prefix
    finally:
        backends.clear_keys(prefix)


@pytest.fixture
def postgres_url():
    """A new PostgreSQL database of this test alone, dropped after."""
    import backends

    with backends.postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A new database of each kind in turn: SQLite in the test's directory,
    then a PostgreSQL database of this test alone."""
    import backends

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'exporthub.db'}"
        return
    with backends.postgres_database() as url:
        yield url


@pytest.fixture
async def db(database_url):
    """:func:`database_url`'s database with the schema, closed after."""
    from exporthub.store import Database

    database = Database(database_url)
    await database.create()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def hn():
    """The Hacker News stand-in with the default thread, on a free port."""
    from hn_fixture import serve_hackernews

    with serve_hackernews() as fixture:
        yield fixture


def _release_server_backends() -> None:
    servers = sys.modules.get("servers")
    if servers is not None:
        servers.release_backends()


@pytest.fixture(autouse=True)
def _release_after_each_test():
    """Drop what servers.py made for servers that ended with the test."""
    yield
    _release_server_backends()


@pytest.fixture(autouse=True, scope="session")
def _release_after_the_session():
    """Drop what servers.py made for servers shared by a module."""
    yield
    _release_server_backends()
