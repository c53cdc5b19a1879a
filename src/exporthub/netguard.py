"""Which addresses exporthub may send requests to on a user's behalf.

Webhook URLs and Mastodon instances come from users, and the requests leave
from inside the operator's network, so such a URL must be a plain http(s)
URL whose host resolves only to public internet addresses. Loopback,
private, link-local, unique-local, multicast, reserved and shared
(carrier-grade NAT) addresses are refused, and so are addresses that embed one of
those (IPv4-mapped, NAT64, 6to4, Teredo). An operator may allow networks
explicitly (``EXPORTHUB_WEBHOOK_ALLOWED_NETWORKS``); cloud metadata services
stay refused even then, since no webhook has business there.

The check runs at registration and again before every attempt; the attempt
then connects to the address that was checked, so a DNS answer that changes
in between (rebinding) cannot point the request somewhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx

from exporthub.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
MAX_PORT = 65535
ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2/32",  # AWS container credentials
        "fd00:ec2::254/128",  # AWS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud
        "168.63.129.16/32",  # Azure host agent, inside public address space
    )
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
SHARED_NETWORK = ipaddress.ip_network("100.64.0.0/10")
UNIQUE_LOCAL_NETWORK = ipaddress.ip_network("fc00::/7")
IPV4_MASK = 0xFFFFFFFF


class EndpointError(ValueError):
    """The URL cannot be a webhook endpoint."""


class AddressRefused(EndpointError):
    """The endpoint's host is, or resolves to, an address that is not allowed."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed webhook URL: what to resolve and what to send as ``Host``."""

    url: httpx.URL
    host: str
    port: int

    @property
    def is_https(self) -> bool:
        return self.url.scheme == "https"

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    def pinned_url(self, address: IPAddress) -> httpx.URL:
        """The URL with its host replaced by ``address``, the checked one."""
        return self.url.copy_with(host=str(address), fragment=None)


def parse_endpoint(raw: object) -> Endpoint:
    """Parse a webhook URL.

    Raises:
        EndpointError: not a string, too long, not http(s), no host, or
            with credentials in it.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise EndpointError("url is required: the http(s) address to POST events to")
    raw = raw.strip()
    if len(raw) > MAX_URL_LENGTH:
        raise EndpointError(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        raise EndpointError(f"url is not a valid URL: {exc}") from exc
    if url.scheme not in ALLOWED_SCHEMES:
        raise EndpointError("url must start with http:// or https://")
    if not url.raw_host:
        raise EndpointError("url has no host")
    if url.userinfo:
        raise EndpointError("url must not carry a user name or password")
    host = url.raw_host.decode("ascii").strip("[]")
    port = url.port or DEFAULT_PORTS[url.scheme]
    if not 1 <= port <= MAX_PORT:
        raise EndpointError(f"port {port} is not a TCP port")
    return Endpoint(url=url, host=host, port=port)


def refusal(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be sent to, or None when it may."""
    target = _unwrapped(address)
    candidates = [target, *_tunnelled(target)]
    for candidate in candidates:
        if any(_contains(network, candidate) for network in METADATA_NETWORKS):
            return "cloud metadata"
    if any(_contains(network, target) for network in allowed):
        return None
    for candidate in candidates:
        kind = _kind(candidate)
        if kind is not None:
            return kind
    return None


async def resolve(
    endpoint: Endpoint, allowed: Iterable[IPNetwork] = ()
) -> list[IPAddress]:
    """Every address of the endpoint's host, each one checked.

    Returns:
        The addresses; connect to the first.

    Raises:
        EndpointError: the host does not resolve.
        AddressRefused: one of its addresses is not allowed.
    """
    allowed = tuple(allowed)
    literal = _literal(endpoint.host)
    if literal is not None:
        addresses = [literal]
    else:
        addresses = await _lookup(endpoint.host, endpoint.port)
    for address in addresses:
        reason = refusal(address, allowed)
        if reason is None:
            continue
        if literal is not None:
            raise AddressRefused(f"{address} is a {reason} address")
        raise AddressRefused(
            f"{endpoint.host} resolves to {address}, a {reason} address"
        )
    return [_unmapped(address) for address in addresses]


async def _lookup(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointError(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise EndpointError(f"cannot resolve {host}: no addresses")
    return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _unwrapped(address: IPAddress) -> IPAddress:
    """The IPv4 address behind an IPv4-mapped or NAT64 one; others as they are.

    Both are only another spelling of an IPv4 destination, so that address
    is the one to judge.
    """
    address = _unmapped(address)
    if address.version == 6 and address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & IPV4_MASK)
    return address


def _tunnelled(address: IPAddress) -> Iterator[IPAddress]:
    """The IPv4 addresses a 6to4 or Teredo address tunnels to."""
    if address.version != 6:
        return
    if address.sixtofour:
        yield address.sixtofour
    if address.teredo:
        yield from address.teredo


def _contains(network: IPNetwork, address: IPAddress) -> bool:
    return address.version == network.version and address in network


def _kind(address: IPAddress) -> str | None:
    """The kind of non-public address, or None for a public one."""
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.version == 6 and address in UNIQUE_LOCAL_NETWORK:
        return "unique-local"
    if address.version == 4 and address in SHARED_NETWORK:
        return "shared (carrier-grade NAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None
