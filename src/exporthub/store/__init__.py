"""Persistence: the schema and the database handle shared by every layer."""

from exporthub.store.db import Database, utcnow
from exporthub.store.schema import jobs, metadata, users

__all__ = ["Database", "jobs", "metadata", "users", "utcnow"]
