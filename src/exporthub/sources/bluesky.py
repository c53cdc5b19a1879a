"""Bluesky, through the public AppView's XRPC API (no account needed).

A handle in the URL is resolved to a DID, then ``getPostThread`` returns the
whole reply tree at once. Where the tree comes back cut (a post reports more
replies than it carries), that post's own thread is read once more.

``total`` is the number of visible replies, at every depth, in the tree as
first returned, and it grows if a cut branch yields more. The root post's
``replyCount`` is not used because it counts direct replies only.

Post text is plain text; ``createdAt`` is the time the author's client
declared, which is what Bluesky itself displays.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import httpx

from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    PermanentSourceError,
)
from exporthub.sources.common import admitted, parse_time, seconds_until, text_body
from exporthub.sources.http import (
    decode_json,
    error_body,
    raise_for_status,
    retry_after,
    send,
)

DEFAULT_API = "https://public.api.bsky.app"
PERMALINK = "https://bsky.app/profile/{actor}/post/{rkey}"
POST_COLLECTION = "app.bsky.feed.post"
# The most getPostThread accepts.
MAX_DEPTH = 1000
THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
# Handles that failed verification are shown this way; the DID still works.
INVALID_HANDLE = "handle.invalid"

_HANDLE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    re.IGNORECASE,
)
_DID = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]*[A-Za-z0-9._-]$")
_RKEY = re.compile(r"^[A-Za-z0-9._:~-]{1,512}$")
_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?bsky\.app/profile/([^/?#]+)/post/([^/?#]+)"
    r"/?(?:[?#].*)?$",
    re.IGNORECASE,
)

Node = dict[str, Any]


class Bluesky(Adapter):
    """Replies to a Bluesky post."""

    key = "bluesky"
    name = "Bluesky"
    url_patterns = ("https://bsky.app/profile/{handle-or-did}/post/{rkey}",)
    examples = ("https://bsky.app/profile/bsky.app/post/3l6oveex3ii2l",)
    extra_columns = ("likes", "replies")
    default_api = DEFAULT_API

    @classmethod
    def parse(cls, url: str) -> str | None:
        match = _URL.match(url)
        if not match:
            return None
        actor, rkey = unquote(match.group(1)), match.group(2)
        if actor.lower().startswith("did:"):
            if not _DID.match(actor):
                return None
        elif _HANDLE.match(actor):
            actor = actor.lower()
        else:
            return None
        if not _RKEY.match(rkey) or rkey in (".", ".."):
            return None
        return f"{actor}/{rkey}"

    def comments(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        return admitted(self._walk(ref, options), options)

    async def _walk(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        actor, rkey = ref.split("/", 1)
        did = actor if actor.startswith("did:") else await self._resolve(actor)
        root_uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
        root = await self._thread(root_uri)
        if root is None or not _visible(root):
            raise PermanentSourceError(
                "this Bluesky post was deleted or is blocked from public view"
            )
        top = root.get("replies") or []
        total = self.total = _count(top)
        # Each frame is the rest of one level, its depth and its parent's URI.
        stack: list[tuple[Iterator[Node], int, str]] = [(iter(top), 0, root_uri)]
        reread: set[str] = set()
        while stack:
            nodes, depth, parent = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                continue
            if not _visible(node):
                continue
            post = node["post"]
            yield _comment(post, parent, depth)
            if not options.replies:
                continue
            kids = node.get("replies") or []
            if int(post.get("replyCount") or 0) > len(kids) and (
                post["uri"] not in reread
            ):
                reread.add(post["uri"])
                # A reply deleted since the first answer just has no more.
                fresh = await self._thread(post["uri"], missing_ok=True)
                if fresh is not None and _visible(fresh):
                    found = fresh.get("replies") or []
                    total = self.total = total + _count(found) - _count(kids)
                    kids = found
            if kids:
                stack.append((iter(kids), depth + 1, post["uri"]))

    async def _resolve(self, handle: str) -> str:
        body = await self._get(
            "com.atproto.identity.resolveHandle",
            {"handle": handle},
            missing=f"the Bluesky handle {handle} does not exist",
        )
        did = (body or {}).get("did")
        if not isinstance(did, str) or not _DID.match(did):
            raise PermanentSourceError(f"the Bluesky handle {handle} does not exist")
        return did

    async def _thread(self, uri: str, *, missing_ok: bool = False) -> Node | None:
        body = await self._get(
            "app.bsky.feed.getPostThread",
            {"uri": uri, "depth": MAX_DEPTH, "parentHeight": 0},
            missing=None if missing_ok else "this Bluesky post does not exist",
        )
        thread = (body or {}).get("thread")
        return thread if isinstance(thread, dict) else None

    async def _get(
        self, method: str, params: dict[str, Any], *, missing: str | None
    ) -> Any:
        """The method's answer; None when it says "not found" and ``missing``,
        the reason to give otherwise, is None."""
        response = await send(
            self.http,
            f"{self.base_url}/xrpc/{method}",
            platform=self.name,
            params=params,
        )
        if not response.is_success:
            if missing is None and _not_found(response):
                return None
            _raise(response, missing or "this Bluesky post does not exist")
        return decode_json(response, self.name)


def _visible(node: Node) -> bool:
    """A post to export, not a placeholder for a deleted or blocked one."""
    kind = node.get("$type")
    return isinstance(node.get("post"), dict) and kind in (None, THREAD_VIEW)


def _count(nodes: list[Node]) -> int:
    """Visible posts in ``nodes`` and below."""
    total = 0
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if _visible(node):
            total += 1
            pending.extend(node.get("replies") or [])
    return total


def _comment(post: dict[str, Any], parent: str, depth: int) -> Comment:
    record = post.get("record") or {}
    author = post.get("author") or {}
    handle = author.get("handle")
    if handle == INVALID_HANDLE:
        handle = None
    rkey = post["uri"].rsplit("/", 1)[-1]
    return Comment(
        id=post["uri"],
        parent_id=parent,
        depth=depth,
        author=handle or author.get("did"),
        published_at=_published(post),
        text=text_body(record.get("text")),
        permalink=PERMALINK.format(actor=handle or author.get("did"), rkey=rkey),
        likes=int(post.get("likeCount") or 0),
        replies=int(post.get("replyCount") or 0),
    )


def _not_found(response: httpx.Response) -> bool:
    if response.status_code == 404:
        return True
    return response.status_code == 400 and error_body(response).get("error") in (
        "NotFound",
        "InvalidRequest",
    )


def _published(post: dict[str, Any]) -> datetime:
    """The author's declared time, or the time Bluesky indexed the post when
    the client wrote no usable one."""
    declared = (post.get("record") or {}).get("createdAt")
    if isinstance(declared, str):
        try:
            return parse_time(declared)
        except ValueError:
            pass
    return parse_time(post["indexedAt"])


def _raise(response: httpx.Response, missing: str) -> None:
    body = error_body(response)
    error = body.get("error")
    if _not_found(response):
        raise PermanentSourceError(missing)
    if response.status_code == 400:
        if error in ("BlockedActor", "BlockedByActor"):
            raise PermanentSourceError("this Bluesky post is blocked from view")
        message = body.get("message") or error or f"HTTP {response.status_code}"
        raise PermanentSourceError(f"Bluesky refused the request: {message}")
    wait = None
    if retry_after(response) is None:
        wait = seconds_until(response.headers.get("ratelimit-reset"))
    raise_for_status(response, Bluesky.name, wait=wait)
