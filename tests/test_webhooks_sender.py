"""One attempt over TLS to a local receiver: the request goes to the checked
address, yet the certificate is verified against the URL's host name."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from pathlib import Path

import pytest

from exporthub.config import WebhookSettings
from exporthub.webhooks import sender
from webhook_receiver import serve_receiver

LOOPBACK_ONLY = WebhookSettings(
    timeout=5.0, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)
)
CERT_DAYS = "1"


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for DNS name ``name``, made by openssl."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            CERT_DAYS,
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def message(url: str) -> sender.Message:
    return sender.Message(
        url=url,
        secret="whsec_test",
        body=b"{}",
        delivery="0c5e3d2a-6f0e-4a53-9a3e-0d3f4c6b9e21",
        event="job.created",
        attempt=1,
    )


@pytest.fixture(scope="module")
def localhost_cert(tmp_path_factory) -> tuple[Path, Path]:
    return certificate(tmp_path_factory.mktemp("tls"), "localhost")


async def test_https_to_a_host_name_is_verified_against_that_name(
    localhost_cert,
) -> None:
    cert, key = localhost_cert
    with serve_receiver(tls=server_tls(cert, key)) as receiver:
        async with sender.new_client(ssl.create_default_context(cafile=cert)) as c:
            url = f"https://localhost:{receiver.port}/hook"
            outcome = await sender.attempt(c, message(url), LOOPBACK_ONLY)
    assert (outcome.status_code, outcome.error, outcome.success) == (200, None, True)
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


async def test_https_with_a_certificate_for_another_name_fails(tmp_path) -> None:
    cert, key = certificate(tmp_path, "hooks.example.com")
    with serve_receiver(tls=server_tls(cert, key)) as receiver:
        async with sender.new_client(ssl.create_default_context(cafile=cert)) as c:
            url = f"https://localhost:{receiver.port}/hook"
            outcome = await sender.attempt(c, message(url), LOOPBACK_ONLY)
    assert (outcome.status_code, outcome.success) == (None, False)
    assert outcome.error is not None
    assert "Hostname mismatch" in outcome.error
    assert receiver.requests == []


async def test_https_with_an_untrusted_certificate_fails(localhost_cert) -> None:
    cert, key = localhost_cert
    with serve_receiver(tls=server_tls(cert, key)) as receiver:
        async with sender.new_client() as client:
            url = f"https://localhost:{receiver.port}/hook"
            outcome = await sender.attempt(client, message(url), LOOPBACK_ONLY)
    assert (outcome.status_code, outcome.success) == (None, False)
    assert outcome.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert receiver.requests == []
