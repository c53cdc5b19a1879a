"""Delivery signatures, checked with the recipe the README gives receivers."""

from __future__ import annotations

import time

import httpx

from exporthub.webhooks.signing import new_secret, signature_headers
from readme_snippets import load_function

VERIFY = load_function("### Verifying a delivery", "verify_exporthub")
BODY = b'{"version":"v3-beta","event":"job.finished","guid":"g"}'
TOLERANCE = 300


def headers_for(secret: str, timestamp: int, body: bytes = BODY) -> httpx.Headers:
    # Lower-case names, as an HTTP server hands them over.
    signed = signature_headers(secret, timestamp, body)
    return httpx.Headers({name.lower(): value for name, value in signed.items()})


def test_the_readme_recipe_accepts_a_fresh_signature() -> None:
    secret = new_secret()
    assert VERIFY(secret, headers_for(secret, int(time.time())), BODY) is True


def test_the_readme_recipe_refuses_another_body() -> None:
    secret = new_secret()
    headers = headers_for(secret, int(time.time()))
    assert VERIFY(secret, headers, BODY.replace(b"finished", b"failed")) is False


def test_the_readme_recipe_refuses_another_secret() -> None:
    headers = headers_for(new_secret(), int(time.time()))
    assert VERIFY(new_secret(), headers, BODY) is False


def test_the_readme_recipe_refuses_a_timestamp_older_than_five_minutes() -> None:
    secret = new_secret()
    stale = int(time.time()) - TOLERANCE - 60
    assert VERIFY(secret, headers_for(secret, stale), BODY) is False


def test_the_readme_recipe_refuses_a_timestamp_swapped_after_signing() -> None:
    secret = new_secret()
    signed_at = int(time.time()) - 10
    headers = headers_for(secret, signed_at)
    headers["exporthub-timestamp"] = str(signed_at + 1)
    assert VERIFY(secret, headers, BODY) is False


def test_the_readme_recipe_accepts_one_matching_value_among_several() -> None:
    secret = new_secret()
    headers = headers_for(secret, int(time.time()))
    headers["exporthub-signature"] = (
        "v1=" + "0" * 64 + ", " + headers["exporthub-signature"]
    )
    assert VERIFY(secret, headers, BODY) is True


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_as_openssl_has_it() -> None:
    headers = signature_headers("whsec_test", 1767225600, b"{}")
    assert headers == {
        "Exporthub-Timestamp": "1767225600",
        "Exporthub-Signature": (
            "v1=4a942ef9477fb7b15b98664cf7ff2c2543984c1fa6bdf3520b48dcb25bcd1fe4"
        ),
    }
