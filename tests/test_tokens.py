"""Connection and subscription token verification."""

import time

import jwt
import pytest

from exporthub.realtime.tokens import InvalidToken, TokenExpired, TokenVerifier, issue

SECRET = "unit-test-secret-0123456789abcdef0123"


def test_a_connection_token_grants_its_user_and_channels() -> None:
    token = issue(SECRET, "u1", ttl=60, channels=["exports:u1", "user:u1"])
    claims = TokenVerifier(SECRET).connect(token)
    assert claims.user == "u1"
    assert claims.channels == ("exports:u1", "user:u1")
    assert claims.expires_at is not None


def test_an_expired_token_is_reported_as_expired() -> None:
    token = jwt.encode({"sub": "u1", "exp": int(time.time()) - 10}, SECRET, "HS256")
    with pytest.raises(TokenExpired):
        TokenVerifier(SECRET).connect(token)


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    token = issue("another-secret-0123456789abcdef0123", "u1", ttl=60, channels=[])
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        TokenVerifier(SECRET).connect(token)


def test_an_unsigned_alg_none_token_is_invalid() -> None:
    token = jwt.encode({"sub": "u1", "channels": ["exports:u2"]}, None, "none")
    with pytest.raises(InvalidToken, match="alg"):
        TokenVerifier(SECRET).connect(token)


def test_an_hs512_token_is_invalid_even_with_the_right_secret() -> None:
    token = jwt.encode({"sub": "u1"}, SECRET, "HS512")
    with pytest.raises(InvalidToken):
        TokenVerifier(SECRET).connect(token)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
def test_empty_and_malformed_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(SECRET).connect(token)


def test_a_token_without_sub_is_invalid() -> None:
    token = jwt.encode({"channels": []}, SECRET, "HS256")
    with pytest.raises(InvalidToken, match="sub"):
        TokenVerifier(SECRET).connect(token)


def test_channels_must_be_a_list_of_names() -> None:
    token = jwt.encode({"sub": "u1", "channels": "exports:u1"}, SECRET, "HS256")
    with pytest.raises(InvalidToken, match="channels claim"):
        TokenVerifier(SECRET).connect(token)


def test_a_subscription_token_names_its_channel() -> None:
    token = issue(SECRET, "u1", ttl=60, channel="export.g.job")
    claims = TokenVerifier(SECRET).subscription(token)
    assert (claims.user, claims.channel) == ("u1", "export.g.job")
