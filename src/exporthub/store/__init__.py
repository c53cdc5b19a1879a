"""Persistence: the schema and the database handle shared by every layer."""

from exporthub.store.db import Database, utcnow
from exporthub.store.schema import (
    bulk_downloads,
    job_milestones,
    jobs,
    metadata,
    outbox,
    usage_warnings,
    users,
)

__all__ = [
    "Database",
    "bulk_downloads",
    "job_milestones",
    "jobs",
    "metadata",
    "outbox",
    "usage_warnings",
    "users",
    "utcnow",
]
