"""Connection and subscription token verification."""

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

import jwt
import pytest
from jwt.api_jws import PyJWS
from jwt.warnings import InsecureKeyLengthWarning

from exporthub.realtime.tokens import (
    _JWS,
    InvalidToken,
    TokenExpired,
    TokenVerifier,
    issue,
)

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
    with pytest.warns(InsecureKeyLengthWarning):  # signing it, not verifying
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


def _signed(payload: bytes, secret: str = SECRET) -> str:
    """A correctly signed HS256 token around any payload bytes."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(payload)
    sig = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + b64(sig)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'["sub", "u1"]', "Invalid payload string: must be a json object"),
        (b'{"sub": "u1",', "Invalid payload string: "),
        (b'{"sub": NaN}', "Invalid payload string: "),
    ],
)
def test_a_signed_payload_that_is_no_json_object_is_invalid(
    payload: bytes, message: str
) -> None:
    with pytest.raises(InvalidToken, match=message):
        TokenVerifier(SECRET).connect(_signed(payload))


def test_a_signed_payload_is_read_like_any_other() -> None:
    payload = b'{"sub":"u1","channels":["exports:u1"],"exp":%d}' % (time.time() + 60)
    claims = TokenVerifier(SECRET).connect(_signed(payload))
    assert (claims.user, claims.channels) == ("u1", ("exports:u1",))


def test_a_secret_that_is_an_asymmetric_key_is_refused_at_once() -> None:
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----"
    )
    with pytest.raises(ValueError, match="the token secret cannot sign HS256 tokens"):
        TokenVerifier(pem)


def test_each_verifier_checks_against_its_own_secret() -> None:
    other = "another-secret-0123456789abcdef0123"
    first, second = TokenVerifier(SECRET), TokenVerifier(other)
    token = issue(other, "u1", ttl=60, channels=[])
    assert second.connect(token).user == "u1"
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        first.connect(token)


SEGMENTS = [
    b"",
    b"e30",
    b"e30=",
    b"e30==",
    b"e30===",
    b"eyJzdWIiOiJ1MSJ9",
    b"eyJzdWIiOiJ1MSJ9====",
    b"eyJzdWIiOiJ1MSJ",
    b"eyJzdWIiOiJ1MSJ=",
    b"e31",  # not the canonical encoding of what it decodes to
    b"QQ",
    b"QR",
    b"QQ==",
    b"QQ=",
    b"Q",
    b"Q===",
    b"!!!!",
    b"e3 0",
    b"e3+0",
    b"e3/0",
    b"e3=0",
    b"=e30",
    b"e30\n",
    b"\xff\xfe",
    b"-_-_",
]


@pytest.mark.parametrize("segment", SEGMENTS)
def test_segments_are_refused_exactly_as_pyjwt_refuses_them(segment: bytes) -> None:
    def outcome(decode: Callable[[bytes, str], bytes]) -> bytes | str:
        try:
            return decode(segment, "payload")
        except jwt.DecodeError as exc:
            return f"refused: {exc}"

    assert outcome(_JWS._decode_base64url_segment) == outcome(
        PyJWS._decode_base64url_segment
    )


def test_junk_in_any_segment_of_a_signed_token_is_invalid() -> None:
    good = issue(SECRET, "u1", ttl=60, channels=[])
    head, payload, sig = good.split(".")
    for forged in (
        f"{head}!.{payload}.{sig}",
        f"{head}.{payload}!.{sig}",
        f"{head}.{payload}.{sig}!",
    ):
        with pytest.raises(InvalidToken, match="padding"):
            TokenVerifier(SECRET).connect(forged)
    assert TokenVerifier(SECRET).connect(good).user == "u1"
