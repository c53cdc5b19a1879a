"""Users and API keys.

An API key is shown once, at creation. Only its SHA-256 digest is stored:
keys are 256 random bits, so a fast hash is enough to make a stolen
database useless for signing in, and lookups stay a single indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from exporthub.store import Database, users, utcnow
from exporthub.store.db import as_utc

API_KEY_PREFIX = "ehk_"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserExists(ValueError):
    """A user with this email already exists."""


@dataclass(frozen=True, slots=True)
class User:
    """A user as the other layers see it."""

    id: int
    uuid: str
    email: str
    plan: str | None
    plan_status: str | None
    plan_started_at: datetime | None
    plan_ends_at: datetime | None
    created_at: datetime


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


async def create_user(db: Database, email: str) -> tuple[User, str]:
    """Create a user; returns it and its API key, which is not stored.

    Raises:
        ValueError: the email is not an email address.
        UserExists: the email is taken.
    """
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise ValueError(f"{email!r} is not an email address")
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    values = {
        "uuid": str(uuid.uuid4()),
        "email": email,
        "api_key_hash": hash_api_key(api_key),
        "created_at": utcnow(),
    }
    try:
        async with db.engine.begin() as conn:
            user_id = (
                await conn.execute(
                    users.insert().values(**values).returning(users.c.id)
                )
            ).scalar_one()
    except IntegrityError as exc:
        raise UserExists(f"a user with email {email} already exists") from exc
    user = await get_user_by_id(db, user_id)
    assert user is not None
    return user, api_key


async def authenticate(db: Database, api_key: str | None) -> User | None:
    """The user owning ``api_key``, or None."""
    if not api_key:
        return None
    digest = hash_api_key(api_key)
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(users).where(users.c.api_key_hash == digest))
        ).first()
    # The lookup is by digest; compare again in constant time for good measure.
    if row is None or not hmac.compare_digest(row.api_key_hash, digest):
        return None
    return _user(row)


async def get_user_by_id(db: Database, user_id: int) -> User | None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return _user(row) if row else None


async def get_user_by_uuid(db: Database, user_uuid: str) -> User | None:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(users).where(users.c.uuid == user_uuid))
        ).first()
    return _user(row) if row else None


async def users_by_uuid(conn: AsyncConnection, uuids: list[str]) -> list[User]:
    """The users among ``uuids`` that exist, in no particular order."""
    rows = await conn.execute(select(users).where(users.c.uuid.in_(uuids)))
    return [_user(row) for row in rows]


async def get_user_by_email(db: Database, email: str) -> User | None:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(users).where(users.c.email == email.strip().lower())
            )
        ).first()
    return _user(row) if row else None


def _user(row: Row[Any]) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        uuid=m["uuid"],
        email=m["email"],
        plan=m["plan"],
        plan_status=m["plan_status"],
        plan_started_at=as_utc(m["plan_started_at"]),
        plan_ends_at=as_utc(m["plan_ends_at"]),
        created_at=as_utc(m["created_at"]) or utcnow(),
    )
