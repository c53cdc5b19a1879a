"""Settings: one object, read from ``EXPORTHUB_*`` environment variables.

Every variable is documented in the README's configuration table; the
defaults run everything in one process with files under ``./data``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "EXPORTHUB_"
DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    return value if value not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SystemExit(f"{PREFIX}{name} must be a number, not {raw!r}") from exc
    if not math.isfinite(value):
        raise SystemExit(f"{PREFIX}{name} must be a finite number, not {raw!r}")
    return value


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{PREFIX}{name} must be an integer, not {raw!r}") from exc


HISTORY_OVERRIDE = "HISTORY_"
HISTORY_DEFAULTS = frozenset({"SIZE", "TTL"})
_HISTORY_VALUE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_SECONDS_PER = {"": 1, "s": 1, "m": 60, "h": 3600}


def _history_overrides() -> dict[str, tuple[int, float]]:
    """Every ``EXPORTHUB_HISTORY_<NAME>=SIZE/TTL`` but the two defaults, by
    lower-case name. TTL is in seconds, or minutes or hours with ``m``/``h``:
    ``200/600s``, ``50/10m``; ``0/0`` keeps no history."""
    overrides = {}
    start = PREFIX + HISTORY_OVERRIDE
    for key, raw in os.environ.items():
        name = key.removeprefix(start)
        if name == key or name in HISTORY_DEFAULTS or not raw:
            continue
        match = _HISTORY_VALUE.match(raw)
        if match is None:
            raise SystemExit(
                f"{key} must be SIZE/TTL such as 200/600s or 50/10m, not {raw!r}"
            )
        size, ttl, unit = match.groups()
        overrides[name.lower()] = (int(size), float(ttl) * _SECONDS_PER[unit])
    return overrides


@dataclass
class Settings:
    """Runtime configuration of a node (API, channel server and worker)."""

    data_dir: Path = Path("data")
    database_url: str = ""
    broker_url: str = "memory://"
    token_secret: str = ""
    token_ttl: int = 24 * 3600
    api_key: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    progress_interval: float = 5.0
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    max_frame_bytes: int = 64 * 1024
    max_queue_bytes: int = 4 * 1024 * 1024
    stale_delay: float = 10.0
    max_body_bytes: int = 1024 * 1024
    worker_concurrency: int = 2
    job_lease: float = 30.0
    max_attempts: int = 3
    retry_delay: float = 5.0
    source_timeout: float = 20.0
    history_size: int = 100
    outbox_interval: float = 0.5
    shutdown_grace: float = 10.0
    drain_timeout: float = 5.0
    plan_check_interval: float = 30.0
    history_ttl: float = 600.0
    history_overrides: dict[str, tuple[int, float]] = field(default_factory=dict)
    """``(size, ttl)`` by name, from ``EXPORTHUB_HISTORY_<NAME>=SIZE/TTL``."""
    broker_prefix: str = "exporthub"
    source_apis: dict[str, str] = field(default_factory=dict)
    source_secrets: dict[str, str] = field(default_factory=dict)
    webhooks: WebhookSettings = field(default_factory=lambda: WebhookSettings())

    @classmethod
    def from_env(cls) -> Settings:
        """Read every ``EXPORTHUB_*`` variable; unset ones take defaults."""
        data_dir = Path(_env("DATA_DIR", "data") or "data")
        database_url = _env("DATABASE_URL") or f"sqlite:///{data_dir / 'exporthub.db'}"
        if not database_url.startswith(DATABASE_SCHEMES):
            raise SystemExit(
                f"{PREFIX}DATABASE_URL={database_url!r}: use sqlite:///PATH or "
                "postgresql://USER@HOST:PORT/DATABASE"
            )
        settings = cls(
            data_dir=data_dir,
            database_url=database_url,
            broker_url=_env("BROKER", "memory://") or "memory://",
            token_secret=_env("TOKEN_SECRET", "") or "",
            token_ttl=_int("TOKEN_TTL", 24 * 3600),
            api_key=_env("API_KEY"),
            public_url=(_env("PUBLIC_URL", "http://127.0.0.1:8000") or "").rstrip("/"),
            progress_interval=_float("PROGRESS_INTERVAL", 5.0),
            ping_interval=_float("PING_INTERVAL", 25.0),
            pong_timeout=_float("PONG_TIMEOUT", 8.0),
            max_frame_bytes=_int("MAX_FRAME_BYTES", 64 * 1024),
            max_queue_bytes=_int("MAX_QUEUE_BYTES", 4 * 1024 * 1024),
            stale_delay=_float("STALE_DELAY", 10.0),
            max_body_bytes=_int("MAX_BODY_BYTES", 1024 * 1024),
            worker_concurrency=_int("WORKER_CONCURRENCY", 2),
            job_lease=_float("JOB_LEASE", 30.0),
            max_attempts=_int("MAX_ATTEMPTS", 3),
            retry_delay=_float("RETRY_DELAY", 5.0),
            source_timeout=_float("SOURCE_TIMEOUT", 20.0),
            history_size=_int("HISTORY_SIZE", 100),
            outbox_interval=_float("OUTBOX_INTERVAL", 0.5),
            shutdown_grace=_float("SHUTDOWN_GRACE", 10.0),
            drain_timeout=_float("DRAIN_TIMEOUT", 5.0),
            plan_check_interval=_float("PLAN_CHECK_INTERVAL", 30.0),
            history_ttl=_float("HISTORY_TTL", 600.0),
            history_overrides=_history_overrides(),
            broker_prefix=_env("BROKER_PREFIX", "exporthub") or "exporthub",
            webhooks=WebhookSettings.from_env(),
        )
        from exporthub.sources.registry import ADAPTERS

        for adapter in ADAPTERS:
            name = adapter.key.upper()
            settings.source_apis[adapter.key] = (
                _env(f"{name}_API", adapter.default_api) or adapter.default_api
            )
            if adapter.secret_setting:
                secret = os.environ.get(adapter.secret_setting)
                if secret:
                    settings.source_secrets[adapter.key] = secret
        if (drain := settings.drain_timeout) < 0:
            raise SystemExit(f"{PREFIX}DRAIN_TIMEOUT must not be negative, not {drain}")
        return settings

    def ensure_token_secret(self) -> str:
        """The JWT signing secret: the configured one, or one generated once
        and kept in the data directory so tokens survive a restart."""
        if self.token_secret:
            return self.token_secret
        path = self.data_dir / "token_secret"
        if not path.exists():
            # Written whole under a private name, then linked into place:
            # of processes starting together on a new data directory, one
            # wins and the others read its complete secret.
            self.data_dir.mkdir(parents=True, exist_ok=True)
            draft = self.data_dir / f".token_secret.{secrets.token_hex(8)}"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        self.token_secret = path.read_text().strip()
        return self.token_secret


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class WebhookSettings:
    """How webhook deliveries are attempted, retried and where they may go."""

    max_attempts: int = 10
    retry_delay: float = 30.0
    timeout: float = 10.0
    concurrency: int = 2
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls) -> WebhookSettings:
        settings = cls(
            max_attempts=_int("WEBHOOK_MAX_ATTEMPTS", cls.max_attempts),
            retry_delay=_float("WEBHOOK_RETRY_DELAY", cls.retry_delay),
            timeout=_float("WEBHOOK_TIMEOUT", cls.timeout),
            concurrency=_int("WEBHOOK_CONCURRENCY", cls.concurrency),
            allowed_networks=_networks("WEBHOOK_ALLOWED_NETWORKS"),
        )
        for name, value in (
            ("WEBHOOK_MAX_ATTEMPTS", settings.max_attempts),
            ("WEBHOOK_RETRY_DELAY", settings.retry_delay),
            ("WEBHOOK_TIMEOUT", settings.timeout),
            ("WEBHOOK_CONCURRENCY", settings.concurrency),
        ):
            if value <= 0:
                raise SystemExit(f"{PREFIX}{name} must be above zero, not {value}")
        return settings


def _networks(name: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of CIDR networks, such as ``127.0.0.0/8,::1/128``."""
    networks = []
    for part in (_env(name, "") or "").split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError as exc:
            raise SystemExit(
                f"{PREFIX}{name}: {part.strip()!r} is not a network"
            ) from exc
    return tuple(networks)
