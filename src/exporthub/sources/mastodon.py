"""Mastodon (and servers with its API), read anonymously from the server the
URL names.

Every server is its own API, so the reference carries the server:
``"{host}|{status id}"``. ``default_api`` is empty, meaning "the server in the
reference"; ``EXPORTHUB_MASTODON_API``, when set, replaces ``https://{host}``
for every server (tests point it at a fixture server).

``/statuses/{id}/context`` lists the descendants flat, each with
``in_reply_to_id``. Anonymous callers get at most 60 of them, 20 levels deep,
so a reply that reports more replies than were listed has its own context
read too (once). Direct replies of the post beyond the first 60 cannot be
reached this way without an account. ``total`` is the number of replies
found once that is done. A reply whose parent is not visible (deleted or not
public) is still exported, at depth 1, after the rest of the thread.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from exporthub import netguard
from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    PermanentSourceError,
    plain_text,
)
from exporthub.sources.common import admitted, parse_time
from exporthub.sources.http import (
    decode_json,
    error_body,
    raise_for_status,
    retry_after,
    send,
)

PERMALINK = "https://{host}/@{acct}/{id}"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})+"
_URL = re.compile(
    rf"^(?:https?://)?({_DOMAIN})/@[A-Za-z0-9_.-]+(?:@{_DOMAIN})?/([0-9]{{1,24}})"
    r"/?(?:[?#].*)?$",
    re.IGNORECASE,
)

Status = dict[str, Any]


class Mastodon(Adapter):
    """Replies to a post on a Mastodon server."""

    key = "mastodon"
    name = "Mastodon"
    url_patterns = (
        "https://{server}/@{user}/{id}",
        "https://{server}/@{user}@{other.server}/{id}",
    )
    examples = ("https://mastodon.social/@Gargron/1",)
    extra_columns = ("likes", "replies")
    default_api = ""

    @classmethod
    def parse(cls, url: str) -> str | None:
        match = _URL.match(url)
        if not match:
            return None
        host = match.group(1).lower()
        # The host becomes the API address: only a DNS name, never an IP
        # literal, since a number-only top label is an address.
        if host.rsplit(".", 1)[-1].isdigit():
            return None
        return f"{host}|{match.group(2)}"

    def comments(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        return admitted(self._walk(ref, options), options)

    async def _walk(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        host, root_id = ref.split("|", 1)
        base = self.base_url or f"https://{host}"
        if not self.base_url:
            await _check_public(base)
        await self._get(base, f"/api/v1/statuses/{root_id}")
        context = await self._get(base, f"/api/v1/statuses/{root_id}/context")
        statuses: dict[str, Status] = {}
        for status in (context or {}).get("descendants") or []:
            statuses.setdefault(status["id"], status)
        # The post itself in its own descendants would make the tree a loop.
        statuses.pop(root_id, None)
        if options.replies:
            await self._fill(base, statuses, root_id)
        self.total = len(statuses)

        children: defaultdict[str | None, list[Status]] = defaultdict(list)
        for status in statuses.values():
            children[status.get("in_reply_to_id")].append(status)
        for siblings in children.values():
            siblings.sort(key=_chronological)
        orphans = [
            s
            for parent, kids in children.items()
            if parent != root_id and parent not in statuses
            for s in kids
        ]
        orphans.sort(key=_chronological)

        stack: list[tuple[Iterator[Status], int]] = [(iter(children[root_id]), 0)]
        seen: set[str] = set()
        if options.replies:
            # Pushed first, so they come out after the whole reachable thread.
            stack.insert(0, (iter(orphans), 1))
        while stack:
            items, depth = stack[-1]
            status = next(items, None)
            if status is None:
                stack.pop()
                continue
            if status["id"] in seen:
                continue
            seen.add(status["id"])
            yield _comment(status, host, depth)
            kids = children.get(status["id"])
            if options.replies and kids:
                stack.append((iter(kids), depth + 1))

    async def _fill(self, base: str, statuses: dict[str, Status], root_id: str) -> None:
        """Read the context of every reply with replies not yet listed."""
        known = Counter(s.get("in_reply_to_id") for s in statuses.values())
        pending = list(statuses.values())
        asked: set[str] = set()
        while pending:
            status = pending.pop()
            sid = status["id"]
            if sid in asked or int(status.get("replies_count") or 0) <= known[sid]:
                continue
            asked.add(sid)
            context = await self._get(
                base, f"/api/v1/statuses/{sid}/context", missing_ok=True
            )
            for found in (context or {}).get("descendants") or []:
                if found["id"] not in statuses and found["id"] != root_id:
                    statuses[found["id"]] = found
                    known[found.get("in_reply_to_id")] += 1
                    pending.append(found)

    async def _get(self, base: str, path: str, *, missing_ok: bool = False) -> Any:
        response = await send(self.http, f"{base}{path}", platform=self.name)
        if not response.is_success:
            if missing_ok and response.status_code in (404, 410):
                return None
            _raise(response)
        return decode_json(response, self.name)


def _chronological(status: Status) -> tuple[datetime, int, str]:
    created = status.get("created_at")
    moment = parse_time(created) if created else datetime.min.replace(tzinfo=UTC)
    # Ids sort by length then text: numeric ids and fixed-width ones alike.
    return moment, len(status["id"]), status["id"]


def _comment(status: Status, host: str, depth: int) -> Comment:
    account = status.get("account") or {}
    acct = account.get("acct")
    return Comment(
        id=status["id"],
        parent_id=status.get("in_reply_to_id"),
        depth=depth,
        author=acct,
        published_at=parse_time(status["created_at"]),
        text=plain_text(status.get("content")),
        permalink=status.get("url")
        or status.get("uri")
        or PERMALINK.format(host=host, acct=acct, id=status["id"]),
        likes=int(status.get("favourites_count") or 0),
        replies=int(status.get("replies_count") or 0),
    )


def _raise(response: httpx.Response) -> None:
    status = response.status_code
    message = error_body(response).get("error")
    if status in (404, 410):
        raise PermanentSourceError(
            "this Mastodon post does not exist, was deleted or is not public"
        )
    if status == 401:
        raise PermanentSourceError(
            "this Mastodon server shows posts to signed-in users only"
        )
    if status == 403:
        raise PermanentSourceError(
            f"this Mastodon server refused access: {message}"
            if message
            else "this Mastodon server refused access to the post"
        )
    wait = None
    reset = response.headers.get("x-ratelimit-reset")
    if retry_after(response) is None and reset:
        # Mastodon gives the reset as an ISO 8601 time.
        try:
            wait = max(0.0, (parse_time(reset) - datetime.now(UTC)).total_seconds())
        except ValueError:
            wait = None
    raise_for_status(response, Mastodon.name, wait=wait)


async def _check_public(base: str) -> None:
    """Refuse an instance whose name resolves to a private, loopback or
    metadata address: the host comes from the user's URL, and the request
    would leave from inside the operator's network.

    Limitation: the name is resolved again when connecting, so a DNS answer
    that changes in between is not caught; webhooks pin the checked address,
    adapters do not yet.
    """
    try:
        await netguard.resolve(netguard.parse_endpoint(base))
    except netguard.AddressRefused as exc:
        raise PermanentSourceError(f"Mastodon instance refused: {exc}") from exc
    except netguard.EndpointError as exc:
        raise PermanentSourceError(f"Mastodon instance unreachable: {exc}") from exc
