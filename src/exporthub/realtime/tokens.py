"""Verification of connection and subscription tokens (JWT, HS256).

Only HMAC-SHA256 is accepted: a token signed with another algorithm, or with
``alg: none``, is invalid. The claims follow Centrifugo's: ``sub`` is the
user, ``exp`` the expiry, ``channels`` the server-side subscriptions of a
connection token, and ``channel`` the one channel of a subscription token.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS

ALGORITHM = "HS256"
BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class TokenExpired(Exception):
    """The token was valid but its ``exp`` has passed."""


class InvalidToken(Exception):
    """The token is empty, malformed, forged or misses a required claim."""


@dataclass(frozen=True, slots=True)
class ConnectClaims:
    """What a connection token grants."""

    user: str
    expires_at: int | None
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubscriptionClaims:
    """What a subscription token grants."""

    user: str
    channel: str
    expires_at: int | None


class _KnownSecretHS256(HMACAlgorithm):
    """HS256 that checks its one secret once.

    PyJWT checks on every verification that an HMAC secret is not an
    asymmetric key in disguise (by trying to load it as one): the same
    check, done for our secret when the verifier is made.
    """

    def __init__(self, secret: str) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._secret = secret
        self._prepared = super().prepare_key(secret)

    def prepare_key(self, key: str | bytes) -> bytes:
        if key == self._secret:
            return self._prepared
        return super().prepare_key(key)


class _JWS(PyJWS):
    """PyJWS whose check of each base64url segment is done by C code.

    PyJWT refuses a segment with characters outside the base64url alphabet,
    with more than two or misplaced ``=``, of an impossible length, or not
    in its one canonical encoding; it checks the alphabet one character at
    a time in Python, a third of a token's verification. This refuses
    exactly the same segments, with the same error.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if (
            padding > 2
            or (padding and len(segment) % 4)
            or len(stripped) % 4 == 1
            or stripped.translate(None, BASE64URL)
        ):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
        except binascii.Error as exc:
            raise jwt.DecodeError(f"Invalid {name} padding") from exc
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


class _Decoder(jwt.PyJWT):
    """PyJWT with the known secret's HS256, the C segment check, and claims
    parsed by orjson."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._jws = _JWS(algorithms=[ALGORITHM], options=self._jws.options)
        self._jws.unregister_algorithm(ALGORITHM)
        self._jws.register_algorithm(ALGORITHM, _KnownSecretHS256(secret))

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = orjson.loads(decoded["payload"])
        except orjson.JSONDecodeError as exc:
            raise jwt.DecodeError(f"Invalid payload string: {exc}") from exc
        if not isinstance(payload, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        return payload


class TokenVerifier:
    """Checks tokens against one shared secret.

    Args:
        secret: the HMAC key the tokens were signed with.
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a token secret is required")
        self._secret = secret
        try:
            self._decoder = _Decoder(secret)
        except jwt.InvalidKeyError as exc:
            raise ValueError(
                f"the token secret cannot sign HS256 tokens: {exc}"
            ) from exc

    def connect(self, token: str) -> ConnectClaims:
        """Verify a connection token.

        Raises:
            TokenExpired: the token has expired.
            InvalidToken: anything else wrong with it.
        """
        claims = self._decode(token)
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(
            isinstance(c, str) and c for c in channels
        ):
            raise InvalidToken("channels claim must be a list of channel names")
        return ConnectClaims(
            user=claims["sub"],
            expires_at=claims.get("exp"),
            channels=tuple(dict.fromkeys(channels)),
        )

    def subscription(self, token: str) -> SubscriptionClaims:
        """Verify a subscription token (claims ``sub``, ``channel``, ``exp``)."""
        claims = self._decode(token)
        channel = claims.get("channel")
        if not isinstance(channel, str) or not channel:
            raise InvalidToken("channel claim missing")
        return SubscriptionClaims(claims["sub"], channel, claims.get("exp"))

    def _decode(self, token: str) -> dict:
        if not isinstance(token, str) or not token:
            raise InvalidToken("token required")
        try:
            claims = self._decoder.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired(str(exc)) from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from exc
        if not isinstance(claims.get("sub"), str):
            raise InvalidToken("sub claim must be a string")
        return claims


def issue(
    secret: str,
    user: str,
    *,
    ttl: int,
    channels: list[str] | None = None,
    channel: str | None = None,
) -> str:
    """Sign a connection token (``channels``) or a subscription token
    (``channel``) for ``user``, valid for ``ttl`` seconds."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user, "iat": now, "exp": now + ttl}
    if channels is not None:
        claims["channels"] = channels
    if channel is not None:
        claims["channel"] = channel
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
