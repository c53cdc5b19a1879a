"""Users and their API keys."""

from exporthub.accounts.users import (
    User,
    UserExists,
    authenticate,
    create_user,
    get_user_by_email,
    get_user_by_id,
    get_user_by_uuid,
)

__all__ = [
    "User",
    "UserExists",
    "authenticate",
    "create_user",
    "get_user_by_email",
    "get_user_by_id",
    "get_user_by_uuid",
]
