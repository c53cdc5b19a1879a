"""How a job looks from outside: the REST object and its download links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exporthub.exports.constants import Status
from exporthub.exports.jobs import Job

FILE_KINDS = {"xlsx": "download_link", "json": "json_url", "ndjson": "rawFile"}


def file_name(job: Job, fmt: str) -> str:
    return f"{job.platform}-{job.guid}.{fmt}"


def file_link(job: Job, fmt: str, public_url: str) -> str | None:
    """The unguessable download address of one of the job's files."""
    if job.status is not Status.DONE or not job.files_token:
        return None
    return f"{public_url}/download/{job.files_token}/{file_name(job, fmt)}"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def job_object(job: Job, public_url: str) -> dict[str, Any]:
    """The job as ``GET /api/v3/job/{guid}`` returns it."""
    return {
        "id": job.id,
        "guid": job.guid,
        "status": job.status.value,
        "url": job.url,
        "platform": job.platform,
        "options": job.options,
        "locked": job.locked,
        "total": job.total,
        "total_exported": job.total_exported,
        "error": job.error,
        "download_link": file_link(job, "xlsx", public_url),
        "json_url": file_link(job, "json", public_url),
        "rawFile": file_link(job, "ndjson", public_url),
        "attempts": job.attempts,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }
