"""The webhook address guard, on addresses and URLs only: nothing here
resolves a name or opens a connection."""

from __future__ import annotations

import ipaddress

import pytest

from exporthub.netguard import (
    AddressRefused,
    EndpointError,
    parse_endpoint,
    refusal,
    resolve,
)

LOOPBACK_ONLY = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("192.0.2.10", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("64:ff9b::a00:1", "private"),
        ("2002:a00:1::1", "private"),
    ],
)
def test_a_non_public_address_is_refused_with_its_kind(address, reason) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "1.1.1.1"]
)
def test_a_public_address_is_allowed(address) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_opens_its_addresses() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), LOOPBACK_ONLY) is None
    assert refusal(ipaddress.ip_address("127.8.9.10"), LOOPBACK_ONLY) is None


def test_an_allowed_network_opens_nothing_outside_it() -> None:
    assert refusal(ipaddress.ip_address("::1"), LOOPBACK_ONLY) == "loopback"
    assert refusal(ipaddress.ip_address("10.0.0.1"), LOOPBACK_ONLY) == "private"


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address_for_the_allow_list() -> None:
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK_ONLY) is None


def test_a_metadata_address_stays_refused_inside_an_allowed_network() -> None:
    everything = (
        ipaddress.ip_network("0.0.0.0/0"),
        ipaddress.ip_network("::/0"),
    )
    assert refusal(ipaddress.ip_address("169.254.169.254"), everything) == (
        "cloud metadata"
    )
    assert refusal(ipaddress.ip_address("fd00:ec2::254"), everything) == (
        "cloud metadata"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "url must start with http:// or https://"),
        ("ftp://example.com/x", "url must start with http:// or https://"),
        ("gopher://127.0.0.1:70/", "url must start with http:// or https://"),
        ("http:///path", "url has no host"),
        ("http://user:pw@example.com/", "url must not carry a user name or password"),
        ("", "url is required: the http(s) address to POST events to"),
        (42, "url is required: the http(s) address to POST events to"),
        ("https://example.com/" + "a" * 2048, "url is longer than 2048 characters"),
    ],
)
def test_a_url_that_cannot_be_an_endpoint_is_refused(url, message) -> None:
    with pytest.raises(EndpointError) as raised:
        parse_endpoint(url)
    assert str(raised.value) == message


def test_an_endpoint_keeps_its_host_for_the_host_header_and_pins_the_address() -> None:
    endpoint = parse_endpoint("https://Hooks.Example.com:8443/in?x=1#part")
    pinned = endpoint.pinned_url(ipaddress.ip_address("2001:db8::7"))
    assert (endpoint.host, endpoint.port, endpoint.host_header) == (
        "hooks.example.com",
        8443,
        "hooks.example.com:8443",
    )
    assert str(pinned) == "https://[2001:db8::7]:8443/in?x=1"


def test_an_ipv6_literal_endpoint_has_its_bare_address_as_host() -> None:
    endpoint = parse_endpoint("http://[::1]/hook")
    assert (endpoint.host, endpoint.port, endpoint.host_header) == ("::1", 80, "[::1]")


async def test_a_refused_literal_address_names_the_address_and_its_kind() -> None:
    with pytest.raises(AddressRefused) as raised:
        await resolve(parse_endpoint("http://[::1]:9/hook"), LOOPBACK_ONLY)
    assert str(raised.value) == "::1 is a loopback address"


async def test_an_allowed_literal_address_resolves_to_itself() -> None:
    endpoint = parse_endpoint("http://127.0.0.1:9/hook")
    assert await resolve(endpoint, LOOPBACK_ONLY) == [ipaddress.ip_address("127.0.0.1")]


def test_a_port_beyond_65535_is_refused() -> None:
    with pytest.raises(EndpointError, match="port 99999 is not a TCP port"):
        parse_endpoint("http://127.0.0.1:99999/hook")
