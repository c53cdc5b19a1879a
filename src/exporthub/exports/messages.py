"""Builders of the notification and dashboard messages: pure functions from
a job (or a user's state) to the ``{"type", "payload", "timestamp"}`` shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exporthub.exports.constants import Dashboard, Level, Notice, Status
from exporthub.exports.jobs import Job
from exporthub.exports.views import file_link
from exporthub.sources.registry import platform_name
from exporthub.store import utcnow

_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def message(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The envelope of dashboard and notification messages."""
    return {
        "type": kind,
        "payload": payload,
        "timestamp": utcnow().replace(microsecond=0).isoformat(),
    }


def human_duration(seconds: float) -> str:
    """``2 minutes``, ``1 hour 5 minutes``: the two largest units."""
    seconds = max(0, int(seconds))
    if seconds == 0:
        return "0 seconds"
    parts = []
    for name, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def percent(exported: int, total: int | None) -> float | None:
    """Progress in percent, one decimal, at most 100; None without a total."""
    if not total:
        return None
    return round(min(100.0, exported * 100 / total), 1)


def job_duration(job: Job, now: datetime | None = None) -> str:
    start = job.started_at or job.created_at
    end = job.finished_at or now or utcnow()
    return human_duration((end - start).total_seconds())


def activity(job: Job, public_url: str) -> dict[str, Any]:
    """One row of the dashboard's activity list."""
    return {
        "id": job.guid,
        "url": job.url,
        "status": job.status.value,
        "progress": 100.0
        if job.status is Status.DONE
        else percent(job.total_exported, job.total),
        "totalItems": job.total,
        "exportedItems": job.total_exported,
        "platform": platform_name(job.platform),
        "duration": job_duration(job),
        "created_at": job.created_at.isoformat(),
        "download_link": file_link(job, "xlsx", public_url),
        "error": job.error,
    }


def activity_update(job: Job, public_url: str) -> dict[str, Any]:
    row = activity(job, public_url)
    updates = {
        key: row[key]
        for key in (
            "id",
            "url",
            "status",
            "progress",
            "totalItems",
            "exportedItems",
            "platform",
            "duration",
            "download_link",
            "error",
        )
    }
    return message(Dashboard.ACTIVITY_UPDATE, {"guid": job.guid, "updates": updates})


def notice(
    kind: Notice,
    title: str,
    text: str,
    level: Level,
    *,
    guid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"title": title, "message": text, "level": level.value}
    if guid is not None:
        payload["guid"] = guid
    payload.update(extra)
    return message(kind, payload)


def started(job: Job) -> dict[str, Any]:
    return notice(
        Notice.EXPORT_STARTED,
        "Export started",
        f"Exporting the comments of {job.url} from {platform_name(job.platform)}.",
        Level.INFO,
        guid=job.guid,
    )


def milestone(job: Job, reached: int, exported: int, total: int) -> dict[str, Any]:
    return notice(
        Notice.EXPORT_PROGRESS,
        f"Export {reached}% done",
        f"{exported} of {total} comments exported from {platform_name(job.platform)}.",
        Level.INFO,
        guid=job.guid,
        progress=reached,
    )


def completed(job: Job, public_url: str) -> dict[str, Any]:
    count = job.total_exported
    return notice(
        Notice.EXPORT_COMPLETED,
        "Export completed",
        f"{count} comment{'s' if count != 1 else ''} exported from "
        f"{platform_name(job.platform)} in {job_duration(job)}.",
        Level.SUCCESS,
        guid=job.guid,
        download_link=file_link(job, "xlsx", public_url),
    )


def failed(job: Job) -> dict[str, Any]:
    if job.status is Status.STOPPED:
        return notice(
            Notice.EXPORT_FAILED,
            "Export stopped",
            f"The export of {job.url} was stopped.",
            Level.WARNING,
            guid=job.guid,
            status=job.status.value,
        )
    return notice(
        Notice.EXPORT_FAILED,
        "Export failed",
        f"The export of {job.url} failed: {job.error}",
        Level.ERROR,
        guid=job.guid,
        status=job.status.value,
        error=job.error,
    )


def subscription_updated(subscription: dict[str, Any]) -> dict[str, Any]:
    status = subscription["status"]
    level = Level.SUCCESS if status == "created" else Level.WARNING
    verbs = {
        "created": "is active",
        "expired": "has expired",
        "canceled": "was canceled",
    }
    return notice(
        Notice.SUBSCRIPTION_UPDATED,
        "Subscription updated",
        f"Your {subscription['plan']} plan {verbs.get(status, status)}.",
        level,
        **subscription,
    )


def usage_warning(usage: dict[str, Any]) -> dict[str, Any]:
    allowance = usage["allowance"]
    return notice(
        Notice.USAGE_LIMIT_WARNING,
        "Approaching your monthly limit",
        f"You have used {usage['percent']}% of this month's allowance: "
        f"{usage['exports']} of {allowance['exports']} exports, "
        f"{usage['items']} of {allowance['items']} comments.",
        Level.WARNING,
        **usage,
    )
