"""The subcommands that talk to a running server as a user: ``export``,
``listen`` and ``jobs``.

They print what a person reads on stderr (progress, notes, errors) and what
a script wants on stdout (the saved file's path, events, the job table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from exporthub.client import (
    DEFAULT_SERVER,
    FORMATS,
    SERVER_ENV,
    USER_KEY_ENV,
    Channels,
    ClientError,
    ExportHubClient,
    JobFailed,
    JobFollower,
    Progress,
    Publication,
    Refused,
    TimedOut,
    Unauthorized,
    Unreachable,
    open_channels,
)
from exporthub.exitcodes import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

PROG = "exporthub"
CLIENT_LOG_LEVEL = "WARNING"
"""The client commands' own output says what happens; library chatter
(each HTTP request, say) shows only when EXPORTHUB_LOG_LEVEL asks for it."""
BAR_WIDTH = 30
TABLE_GAP = "  "
JOB_COLUMNS = ("GUID", "STATUS", "COMMENTS", "PLATFORM", "CREATED (UTC)", "URL")
DEFAULT_PER_PAGE = 20


def add_client_commands(commands: Any) -> None:
    """Register ``export``, ``listen`` and ``jobs`` on the subparsers."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--server",
        default=None,
        help=f"the server's address (default: ${SERVER_ENV} or {DEFAULT_SERVER})",
    )
    connection.add_argument(
        "--api-key",
        default=None,
        help=f"your API key (default: ${USER_KEY_ENV})",
    )

    export = commands.add_parser(
        "export",
        parents=[connection],
        help="export a post's comments on a running server and save the file",
        description="Create an export, follow it live (or by polling when the "
        "WebSocket cannot be reached) and download the file.",
    )
    export.add_argument("url", help="the address of the post or video")
    export.add_argument(
        "--format", choices=FORMATS, default="xlsx", help="file format (xlsx)"
    )
    export.add_argument(
        "--out", type=Path, default=None, help="file or folder to save to"
    )
    export.add_argument(
        "--no-replies", action="store_true", help="top-level comments only"
    )
    export.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up waiting after this long (default: wait until done)",
    )
    export.set_defaults(handler=_export)

    listen = commands.add_parser(
        "listen",
        parents=[connection],
        help="print every event on your channels as it arrives",
    )
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.set_defaults(handler=_listen)

    jobs = commands.add_parser(
        "jobs", parents=[connection], help="list your jobs, newest first"
    )
    jobs.add_argument("--page", type=int, default=1)
    jobs.add_argument("--per-page", type=int, default=DEFAULT_PER_PAGE)
    jobs.set_defaults(handler=_jobs)


# -- shared plumbing ----------------------------------------------------------


def _fail(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _connect(args: argparse.Namespace) -> ExportHubClient | None:
    server = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    api_key = args.api_key or os.environ.get(USER_KEY_ENV)
    if not server.startswith(("http://", "https://")):
        _fail(f"--server {server!r} is not an http:// or https:// address")
        return None
    if not api_key:
        _fail(
            f"no API key; pass --api-key or set {USER_KEY_ENV} (create one on "
            "the server with: exporthub user create EMAIL)"
        )
        return None
    return ExportHubClient(server, api_key)


def _run(work: Coroutine[Any, Any, int]) -> int:
    """Run a command, turning its errors into messages and exit codes."""
    logging.getLogger().setLevel(
        os.environ.get("EXPORTHUB_LOG_LEVEL", CLIENT_LOG_LEVEL).upper()
    )

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await work
        except asyncio.CancelledError:
            _fail(
                "stopped; anything already started goes on on the server "
                "(see: exporthub jobs)"
            )
            return EXIT_INTERRUPTED
        except (Unauthorized, Refused) as exc:
            _fail(str(exc))
            return EXIT_USAGE
        except Unreachable as exc:
            _fail(str(exc))
            return EXIT_UNREACHABLE
        except TimedOut as exc:
            _fail(str(exc))
            return EXIT_TIMEOUT
        except ClientError as exc:
            _fail(str(exc))
            return EXIT_USAGE

    return asyncio.run(guarded())


# -- export -------------------------------------------------------------------


class TerminalProgress(Progress):
    """Draws a progress bar on a terminal, or a line per change elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last: tuple[int, int | None] | None = None
        self._bar_shown = False

    def created(self, job: dict[str, Any]) -> None:
        self._line(f"queued export {job['guid']} of {job['url']}")

    def update(self, exported: int, total: int | None) -> None:
        if (exported, total) == self._last:
            return
        self._last = (exported, total)
        if total:
            share = min(1.0, exported / total)
            counts = f"{exported} of {total} comments ({share * 100:.0f}%)"
        else:
            share = 0.0
            counts = f"{exported} comments"
        if not self.tty:
            self._line(f"progress: {counts}")
            return
        filled = round(share * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r\x1b[K[{bar}] {counts}")
        self.stream.flush()
        self._bar_shown = True

    def note(self, text: str) -> None:
        self._line(text)
        if self._bar_shown and self._last is not None:
            last, self._last = self._last, None
            self.update(*last)

    def done(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    def _line(self, text: str) -> None:
        prefix = "\r\x1b[K" if self._bar_shown else ""
        self.stream.write(f"{prefix}{text}\n")
        self.stream.flush()
        self._bar_shown = False


def _export(args: argparse.Namespace) -> int:
    out: Path | None = args.out
    if out is not None and not out.is_dir() and not out.parent.is_dir():
        _fail(
            f"the folder {out.parent} does not exist; create it or pick another --out"
        )
        return EXIT_USAGE
    if args.timeout is not None and args.timeout <= 0:
        _fail("--timeout must be a positive number of seconds")
        return EXIT_USAGE
    api = _connect(args)
    if api is None:
        return EXIT_USAGE

    async def work() -> int:
        async with api:
            follower = JobFollower(api, TerminalProgress(sys.stderr))
            options = {"replies": False} if args.no_replies else None
            try:
                result = await follower.export(
                    args.url, args.format, out, options, give_up_after=args.timeout
                )
            except JobFailed as exc:
                what = f"{exc.stage} of job {exc.guid}"
                if exc.status == "stopped":
                    _fail(f"the {what} was stopped; run the command again to redo it")
                else:
                    _fail(
                        f"the {what} failed: {exc.reason}; check the URL and run "
                        "the command again"
                    )
                return EXIT_FAILED
            _say(
                f"saved {result.comments} comments to {result.path} "
                f"({result.size} bytes)"
            )
            print(result.path, flush=True)
            return EXIT_OK

    return _run(work())


# -- listen -------------------------------------------------------------------


def describe(publication: Publication, now: datetime | None = None) -> str:
    """One line saying what a publication is, for people."""
    stamp = (now or datetime.now()).strftime("%H:%M:%S")
    data = publication.data
    parts: list[str] = []
    if isinstance(data, dict) and "event" in data:
        parts = [
            str(data["event"]),
            str(data.get("guid") or ""),
            str(data.get("status")),
        ]
        if "current" in data:
            total = data.get("total")
            parts.append(f"{data['current']}/{'?' if total is None else total}")
        details = data.get("details") or {}
        if details.get("error"):
            parts.append(f"error: {details['error']}")
        if data.get("url"):
            parts.append(str(data["url"]))
    elif isinstance(data, dict) and "type" in data:
        parts = [str(data["type"]), *_describe_payload(data)]
    else:
        parts = [json.dumps(data, ensure_ascii=False)]
    return f"{stamp} {publication.namespace} " + " ".join(p for p in parts if p)


def _describe_payload(message: dict[str, Any]) -> list[str]:
    payload = message.get("payload") or {}
    kind = message["type"]
    if "title" in payload:
        return [
            f"[{payload.get('level')}]",
            f"{payload['title']}: {payload['message']}",
        ]
    if kind == "activity_update":
        updates = payload.get("updates") or {}
        return [
            str(payload.get("guid")),
            str(updates.get("status")),
            f"{updates.get('exportedItems')}/{updates.get('totalItems')}",
        ]
    if kind == "new_activity":
        return [
            str(payload.get("id")),
            str(payload.get("status")),
            str(payload.get("url")),
        ]
    if kind == "usage_stats":
        allowance = payload.get("allowance") or {}
        return [
            f"{payload.get('exports')} of {allowance.get('exports')} exports,",
            f"{payload.get('items')} of {allowance.get('items')} comments",
        ]
    if kind == "complete_update":
        return [f"{len(payload.get('activity') or [])} recent jobs"]
    if kind == "subscription_status":
        return [str(payload.get("plan")), str(payload.get("status"))]
    return [json.dumps(payload, ensure_ascii=False)]


def _listen(args: argparse.Namespace) -> int:
    api = _connect(args)
    if api is None:
        return EXIT_USAGE

    async def changed(what: str, reason: str) -> None:
        if what == "lost":
            _say(f"connection lost ({reason}); reconnecting")
        else:
            _say("reconnected; events sent meanwhile may be missing")

    async def work() -> int:
        async with api:
            token = await api.socket_token()
            async with open_channels(api, token, changed) as channels:
                _say(f"listening to {api.ws_url}; Ctrl-C stops")
                try:
                    await _print_events(channels, as_json=args.json)
                except asyncio.CancelledError:
                    return EXIT_OK
        return EXIT_OK

    return _run(work())


async def _print_events(channels: Channels, *, as_json: bool) -> None:
    while True:
        publication = await channels.next()
        if publication is None:
            continue
        if as_json:
            line = json.dumps(
                {"channel": publication.channel, "data": publication.data},
                ensure_ascii=False,
                separators=(",", ":"),
            )
        else:
            line = describe(publication)
        print(line, flush=True)


# -- jobs ---------------------------------------------------------------------


def _created(value: str | None) -> str:
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def job_row(job: dict[str, Any]) -> tuple[str, ...]:
    """One job as the cells of the ``jobs`` table."""
    exported = job.get("total_exported") or 0
    total = job.get("total")
    comments = f"{exported}/{total}" if total is not None else str(exported)
    return (
        str(job["guid"]),
        str(job["status"]),
        comments,
        str(job.get("platform") or ""),
        _created(job.get("created_at")),
        str(job.get("url") or ""),
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        TABLE_GAP.join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in (header, *rows)
    ]


def _jobs(args: argparse.Namespace) -> int:
    if args.page < 1 or args.per_page < 1:
        _fail("--page and --per-page must be positive")
        return EXIT_USAGE
    api = _connect(args)
    if api is None:
        return EXIT_USAGE

    async def work() -> int:
        async with api:
            listing = await api.list_jobs(args.page, args.per_page)
        found = listing["data"]
        meta = listing["meta"]
        if not found:
            if meta["total"]:
                _say(f"page {meta['page']} is past the last ({meta['pages']})")
            else:
                _say("no jobs yet; start one with: exporthub export URL")
            return EXIT_OK
        for line in table(JOB_COLUMNS, [job_row(job) for job in found]):
            print(line)
        more = (
            f"; next: exporthub jobs --page {meta['page'] + 1}"
            if meta["page"] < meta["pages"]
            else ""
        )
        _say(f"page {meta['page']} of {meta['pages']}, {meta['total']} jobs{more}")
        return EXIT_OK

    return _run(work())
