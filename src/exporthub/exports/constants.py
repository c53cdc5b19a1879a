"""Names of the export domain, defined once: statuses, events, channels."""

from __future__ import annotations

from enum import StrEnum

ENVELOPE_VERSION = "v3-beta"


class Status(StrEnum):
    """Job statuses: queueing -> progress -> done | error | stopped."""

    QUEUEING = "queueing"
    PROGRESS = "progress"
    DONE = "done"
    ERROR = "error"
    STOPPED = "stopped"


ACTIVE = frozenset({Status.QUEUEING, Status.PROGRESS})
FINAL = frozenset({Status.DONE, Status.ERROR, Status.STOPPED})


class Event(StrEnum):
    """Events on ``exports:{uuid}`` and ``export.{guid}.job``."""

    CREATED = "job.created"
    PROGRESS = "job.progress"
    FINISHED = "job.finished"
    FAILED = "job.failed"
    REQUEUED = "job.requeued"
    CONVERT_DONE = "job.convert.done"
    CONVERT_FAILED = "job.convert.failed"
    BULK_READY = "bulk_download.ready"
    BULK_FAILED = "bulk_download.failed"


WEBHOOK_ATTEMPTED = "webhook.event.created"
"""The event on ``webhooks:{uuid}``: one webhook delivery attempt."""


class Channel:
    """Channel names. The five personal ones go into every connection token."""

    EXPORTS = "exports:{uuid}"
    WEBHOOKS = "webhooks:{uuid}"
    USER = "user:{uuid}"
    NOTIFICATIONS = "user_notifications_channel:{uuid}"
    DASHBOARD = "user_dashboard_channel:{uuid}"
    JOB = "export.{guid}.job"

    PERSONAL = (USER, EXPORTS, WEBHOOKS, NOTIFICATIONS, DASHBOARD)

    @classmethod
    def personal(cls, uuid: str) -> list[str]:
        return [template.format(uuid=uuid) for template in cls.PERSONAL]

    @classmethod
    def job(cls, guid: str) -> str:
        return cls.JOB.format(guid=guid)


JOB_CHANNEL_PREFIX = "export."
JOB_CHANNEL_SUFFIX = ".job"
JOB_NAMESPACE = "export.*"


def channel_namespace(channel: str) -> str:
    """Namespace of a channel: the part before ``:``, and ``export.*`` for
    the per-job channels (whose names have no ``:``)."""
    head, sep, _ = channel.partition(":")
    if sep:
        return head
    if channel.startswith(JOB_CHANNEL_PREFIX) and channel.endswith(JOB_CHANNEL_SUFFIX):
        return JOB_NAMESPACE
    return ""


def job_guid_of(channel: str) -> str | None:
    """The guid inside ``export.{guid}.job``, or None for other channels."""
    if channel_namespace(channel) != JOB_NAMESPACE:
        return None
    guid = channel[len(JOB_CHANNEL_PREFIX) : -len(JOB_CHANNEL_SUFFIX)]
    return guid or None


class Notice(StrEnum):
    """Message types on ``user_notifications_channel:{uuid}``."""

    EXPORT_STARTED = "export_started"
    EXPORT_COMPLETED = "export_completed"
    EXPORT_FAILED = "export_failed"
    EXPORT_PROGRESS = "export_progress"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    USAGE_LIMIT_WARNING = "usage_limit_warning"


class Level(StrEnum):
    """How a notification should be shown."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


class Dashboard(StrEnum):
    """Message types on ``user_dashboard_channel:{uuid}``."""

    NEW_ACTIVITY = "new_activity"
    ACTIVITY_UPDATE = "activity_update"
    COMPLETE_UPDATE = "complete_update"
    USAGE_STATS = "usage_stats"
    SUBSCRIPTION_STATUS = "subscription_status"


SUBSCRIPTION_UPDATED = "subscription.updated"
"""The event on ``user:{uuid}`` when a plan is created, expires or is canceled."""

MILESTONES = (25, 50, 75)
"""Progress percentages announced once per job run."""

RECENT_ACTIVITY = 10
"""Jobs listed in a dashboard snapshot."""
