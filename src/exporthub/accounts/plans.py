"""Plans, their monthly allowances, and what a user has used this month.

A user without a plan (or whose plan expired or was canceled) gets the
``free`` allowance. A period is a calendar month in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exporthub.accounts.users import User, get_user_by_email, get_user_by_id
from exporthub.store import Database, jobs, usage_warnings, users, utcnow

DEFAULT_PLAN_DAYS = 30
WARNING_RATIO = 0.9
NO_PLAN = "none"


class PlanStatus(StrEnum):
    """What happened to a user's subscription last."""

    CREATED = "created"
    EXPIRED = "expired"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan and its monthly allowance."""

    name: str
    exports: int
    items: int

    def limits(self) -> dict[str, int]:
        return {"exports": self.exports, "items": self.items}


PLANS: dict[str, Plan] = {
    "free": Plan("free", exports=10, items=5_000),
    "premium": Plan("premium", exports=100, items=100_000),
    "business": Plan("business", exports=1_000, items=2_000_000),
}
FALLBACK = PLANS["free"]


class UnknownPlan(ValueError):
    """The plan name is not one of :data:`PLANS` (or ``none``)."""


def active_plan(user: User, now: datetime | None = None) -> Plan:
    """The plan whose allowance applies to ``user`` now."""
    now = now or utcnow()
    if (
        user.plan in PLANS
        and user.plan_status == PlanStatus.CREATED
        and (user.plan_ends_at is None or user.plan_ends_at > now)
    ):
        return PLANS[user.plan]
    return FALLBACK


def period_of(moment: datetime) -> str:
    """The usage period containing ``moment``: ``YYYY-MM``."""
    return moment.strftime("%Y-%m")


def period_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a user has used in one period, against their allowance."""

    period: str
    exports: int
    items: int
    plan: Plan

    @property
    def exhausted(self) -> str | None:
        """Which allowance is used up: ``exports``, ``items`` or None."""
        if self.exports >= self.plan.exports:
            return "exports"
        if self.items >= self.plan.items:
            return "items"
        return None

    @property
    def ratio(self) -> float:
        """The larger share of either allowance used, 0.0 to 1.0 and beyond."""
        return max(self.exports / self.plan.exports, self.items / self.plan.items)

    def to_payload(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "exports": self.exports,
            "items": self.items,
            "allowance": self.plan.limits(),
            "plan": self.plan.name,
            "percent": round(self.ratio * 100, 1),
        }


async def usage(db: Database, user: User, now: datetime | None = None) -> Usage:
    """Exports created and comments exported by ``user`` this period."""
    async with db.engine.connect() as conn:
        return await usage_in(conn, user, now)


async def usage_in(
    conn: AsyncConnection, user: User, now: datetime | None = None
) -> Usage:
    """:func:`usage`, inside the caller's transaction."""
    return (await usage_of(conn, [user], now))[user.id]


async def usage_of(
    conn: AsyncConnection, of: list[User], now: datetime | None = None
) -> dict[int, Usage]:
    """:func:`usage` of several users in one query, by user id."""
    now = now or utcnow()
    rows = await conn.execute(
        select(
            jobs.c.user_id,
            func.count(jobs.c.id),
            func.coalesce(func.sum(jobs.c.total_exported), 0),
        )
        .where(
            jobs.c.user_id.in_([user.id for user in of]),
            jobs.c.created_at >= period_start(now),
        )
        .group_by(jobs.c.user_id)
    )
    used = {row[0]: (int(row[1]), int(row[2])) for row in rows}
    period = period_of(now)
    return {
        user.id: Usage(period, *used.get(user.id, (0, 0)), active_plan(user, now))
        for user in of
    }


async def lock_user(conn: AsyncConnection, user: User) -> None:
    """Hold the user's row until the transaction ends, so that checks of
    the allowance and the inserts they allow happen one request at a time."""
    await conn.execute(update(users).where(users.c.id == user.id).values(id=users.c.id))


async def claim_usage_warning(db: Database, user: User, period: str) -> bool:
    """True the first time this is called for ``user`` and ``period``."""
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                usage_warnings.insert().values(user_id=user.id, period=period)
            )
    except IntegrityError:
        return False
    return True


async def set_plan(
    db: Database, email: str, plan: str, *, days: int = DEFAULT_PLAN_DAYS
) -> User:
    """Give ``email`` a plan for ``days`` days, or cancel with ``none``.

    Raises:
        UnknownPlan: ``plan`` is not a plan name.
        LookupError: no user has this email.
    """
    if plan != NO_PLAN and plan not in PLANS:
        names = ", ".join([*PLANS, NO_PLAN])
        raise UnknownPlan(f"unknown plan {plan!r}; choose one of {names}")
    user = await get_user_by_email(db, email)
    if user is None:
        raise LookupError(f"no user with email {email}")
    now = utcnow()
    if plan == NO_PLAN:
        values: dict[str, Any] = {"plan_status": PlanStatus.CANCELED.value}
        if user.plan is None:
            values["plan"] = FALLBACK.name
    else:
        values = {
            "plan": plan,
            "plan_status": PlanStatus.CREATED.value,
            "plan_started_at": now,
            "plan_ends_at": now + timedelta(days=days),
        }
    async with db.engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user.id).values(**values))
    updated = await get_user_by_id(db, user.id)
    assert updated is not None
    return updated


async def expire_due(db: Database) -> list[User]:
    """Mark plans past their end date expired; returns the users affected."""
    now = utcnow()
    async with db.engine.begin() as conn:
        rows = (
            await conn.execute(
                update(users)
                .where(
                    users.c.plan_status == PlanStatus.CREATED.value,
                    users.c.plan_ends_at <= now,
                )
                .values(plan_status=PlanStatus.EXPIRED.value)
                .returning(users.c.id)
            )
        ).all()
    found = [await get_user_by_id(db, row[0]) for row in rows]
    return [u for u in found if u is not None]


def subscription_payload(user: User) -> dict[str, Any]:
    """The subscription as ``subscription.updated`` and the dashboard show it."""
    plan = PLANS.get(user.plan or "", FALLBACK)
    started, ends = user.plan_started_at, user.plan_ends_at
    return {
        "plan": user.plan or FALLBACK.name,
        "status": user.plan_status or NO_PLAN,
        "limits": plan.limits(),
        "active_limits": active_plan(user).limits(),
        "started_at": started.isoformat() if started else None,
        "ends_at": ends.isoformat() if ends else None,
    }
