"""What the runner, the load generator and every server of the bench share.

Names of users and channels, the shared secrets, the payload published, the
uvicorn settings both Python servers run with, file-descriptor limits and the
kernel settings that bound how many loopback connections can be opened.
"""

from __future__ import annotations

import importlib.util
import math
import resource
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SRC_DIR = REPO_ROOT / "src"

# Only loopback servers this bench starts itself are ever contacted.
HOST = "127.0.0.1"

SECRET = "bench-token-secret-not-for-production"
API_KEY = "bench-api-key"

NAMESPACES = (
    "exports",
    "webhooks",
    "user",
    "user_notifications_channel",
    "user_dashboard_channel",
)
FANOUT_CHANNEL = "exports:fanout"
TOKEN_TTL = 3600


def use_repo_source() -> None:
    """Import ``exporthub`` from this checkout, not from wherever the venv's
    editable install points, so a branch measures its own code."""
    src = str(SRC_DIR)
    if src not in sys.path:
        sys.path.insert(0, src)


def user_name(index: int) -> str:
    return f"u{index}"


def personal_channels(user: str) -> list[str]:
    """The five channels every signed-in user of exporthub listens to."""
    return [f"{ns}:{user}" for ns in NAMESPACES]


def payload(seq: int, ts: float) -> dict[str, Any]:
    """An export-progress event the size of the real ones (about 150 bytes);
    ``ts`` is the publisher's clock, read again by the receiver."""
    return {
        "type": "export.progress",
        "export_id": f"exp_{seq % 100000:06d}",
        "status": "running",
        "rows": 1234,
        "progress": 0.42,
        "seq": seq,
        "ts": ts,
    }


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def uvicorn_options() -> dict[str, Any]:
    """Identical uvicorn settings for exporthub and python-socketio: the
    fastest event loop and HTTP parser that are installed."""
    return {
        "loop": "uvloop" if has_module("uvloop") else "asyncio",
        "http": "httptools" if has_module("httptools") else "h11",
        "ws": "websockets-sansio",
        "backlog": 4096,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
    }


def install_fast_loop() -> str:
    """Use uvloop when installed; returns the loop's name for the record."""
    if has_module("uvloop"):
        import uvloop

        uvloop.install()
        return "uvloop"
    return "asyncio"


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise this process's open-file limit (inherited by what it starts) to
    ``wanted``, or as far as the hard limit lets; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            # Root may lift the hard limit up to fs.nr_open; nobody else may.
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted, wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _read_proc(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def kernel_limits() -> dict[str, Any]:
    """The settings that decide whether N loopback connections fit; only
    read, never changed."""
    ports = _read_proc("/proc/sys/net/ipv4/ip_local_port_range")
    low, high = (int(x) for x in ports.split()) if ports else (32768, 60999)
    return {
        "ip_local_port_range": [low, high],
        "ephemeral_ports": high - low + 1,
        "somaxconn": _int_or_none(_read_proc("/proc/sys/net/core/somaxconn")),
        "tcp_max_syn_backlog": _int_or_none(
            _read_proc("/proc/sys/net/ipv4/tcp_max_syn_backlog")
        ),
        "tcp_tw_reuse": _int_or_none(_read_proc("/proc/sys/net/ipv4/tcp_tw_reuse")),
        "nr_open": _int_or_none(_read_proc("/proc/sys/fs/nr_open")),
    }


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def source_addresses(connections: int, ephemeral_ports: int) -> list[str]:
    """Loopback source addresses enough for ``connections`` at once.

    Each (source, destination) pair has the ephemeral range to itself; half
    of it is kept free for sockets still in TIME_WAIT from earlier phases.
    The whole of 127.0.0.0/8 answers on ``lo``, so nothing is configured.
    """
    per_address = max(1, ephemeral_ports // 2)
    count = max(2, math.ceil(connections / per_address))
    return [f"127.0.0.{i}" for i in range(1, count + 1)]


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def summarize(values_ms: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of latencies in milliseconds (nearest rank)."""
    if not values_ms:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    ordered = sorted(values_ms)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))]

    return {"p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1], "count": n}
