"""Reddit, through the public JSON endpoints (no OAuth).

``/comments/{post}.json`` gives the post and a first slice of the comment
tree, replies nested as listings. What did not fit is left as ``more``
placeholders: one listing ids of hidden comments, expanded with
``/api/morechildren.json`` (which answers with a flat list to be put back
into tree order); one without ids ("continue this thread") stands for the
replies below the depth cut, read again with ``?comment={id}``.

The walk is lazy and iterative: placeholders are expanded only when the walk
reaches them, so a limit stops the requests too, and deep threads do not
nest generators.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import httpx

from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    PermanentSourceError,
    TransientSourceError,
    plain_text,
)
from exporthub.sources.common import admitted, after_window, from_epoch, text_body
from exporthub.sources.http import (
    decode_json,
    error_body,
    raise_for_status,
    retry_after,
    send,
)

DEFAULT_API = "https://www.reddit.com"
SITE = "https://www.reddit.com"
USER_AGENT = "python:exporthub:0.1 (self-hosted comment export service)"
FIRST_PAGE = 500
# morechildren answers at most this many ids per request.
MORE_BATCH = 100
_REMOVED = frozenset({"[deleted]", "[removed]"})

_ID = r"([a-z0-9]{1,12})"
_TAIL = r"(?:/[^?#]*)?(?:[?#].*)?$"
_URLS = (
    re.compile(
        r"^(?:https?://)?(?:(?:www|old|new|np|m)\.)?reddit\.com"
        rf"/(?:r/[A-Za-z0-9_]+/)?comments/{_ID}{_TAIL}",
        re.IGNORECASE,
    ),
    re.compile(rf"^(?:https?://)?redd\.it/{_ID}/?(?:[?#].*)?$", re.IGNORECASE),
)

Thing = dict[str, Any]


class Reddit(Adapter):
    """Comments of a Reddit post."""

    key = "reddit"
    name = "Reddit"
    url_patterns = (
        "https://www.reddit.com/r/{subreddit}/comments/{post}/{slug}/",
        "https://old.reddit.com/r/{subreddit}/comments/{post}/",
        "https://redd.it/{post}",
    )
    examples = (
        "https://www.reddit.com/r/Python/comments/1abc2de/a_post_title/",
        "https://redd.it/1abc2de",
    )
    extra_columns = ("likes", "replies")
    default_api = DEFAULT_API

    @classmethod
    def parse(cls, url: str) -> str | None:
        for pattern in _URLS:
            match = pattern.match(url)
            if match:
                return match.group(1).lower()
        return None

    def comments(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        return admitted(self._walk(ref, options), options)

    async def _walk(
        self, post: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        post_data, top = await self._thread(post)
        self.total = post_data.get("num_comments")
        # Each frame is the rest of one level's things and that level's depth.
        stack: list[tuple[Iterator[Thing], int]] = [(iter(top), 0)]
        # Guards against an answer that hands back a placeholder already done.
        continued: set[str] = set()
        expanded: set[tuple[str, ...]] = set()
        while stack:
            things, depth = stack[-1]
            thing = next(things, None)
            if thing is None:
                stack.pop()
                continue
            data = thing.get("data") or {}
            if thing.get("kind") == "more":
                ids = tuple(data.get("children") or ())
                if ids and ids not in expanded:
                    expanded.add(ids)
                    stack.append((iter(await self._more(post, list(ids))), depth))
                continue
            if thing.get("kind") != "t1":
                continue
            kids = _kids(data)
            walk_kids = options.replies and not after_window(
                from_epoch(float(data.get("created_utc", 0))), options
            )
            if walk_kids and _cut_below(kids) and data["id"] not in continued:
                continued.add(data["id"])
                kids = await self._continued(post, data["id"])
            if not _removed(data):
                yield _comment(data, post, depth, _direct_replies(kids))
            if walk_kids and kids:
                stack.append((iter(kids), depth + 1))

    async def _thread(
        self, post: str, comment: str | None = None
    ) -> tuple[dict[str, Any], list[Thing]]:
        """The post's data and the top things of its (sub)tree."""
        params: dict[str, Any] = {"limit": FIRST_PAGE, "raw_json": 1}
        if comment:
            params["comment"] = comment
        body = await self._get(f"/comments/{post}.json", params, post)
        try:
            post_data = body[0]["data"]["children"][0]["data"]
            things = body[1]["data"]["children"]
        except (KeyError, IndexError, TypeError) as exc:
            raise PermanentSourceError(
                f"Reddit post {post} does not exist or has no comment tree"
            ) from exc
        return post_data, things

    async def _continued(self, post: str, comment: str) -> list[Thing]:
        """The replies of ``comment`` that were below the depth cut."""
        _, things = await self._thread(post, comment)
        for thing in things:
            data = thing.get("data") or {}
            if thing.get("kind") == "t1" and data.get("id") == comment:
                return _kids(data)
        return []

    async def _more(self, post: str, ids: list[str]) -> list[Thing]:
        """Expand a ``more`` placeholder's ids into things in tree order."""
        flat: list[Thing] = []
        for start in range(0, len(ids), MORE_BATCH):
            body = await self._get(
                "/api/morechildren.json",
                {
                    "api_type": "json",
                    "link_id": f"t3_{post}",
                    "children": ",".join(ids[start : start + MORE_BATCH]),
                    "raw_json": 1,
                },
                post,
            )
            answer = (body or {}).get("json") or {}
            _raise_api_errors(answer.get("errors") or [])
            flat.extend((answer.get("data") or {}).get("things") or [])
        return _nest(flat)

    async def _get(self, path: str, params: dict[str, Any], post: str) -> Any:
        response = await send(
            self.http,
            f"{self.base_url}{path}",
            platform=self.name,
            params=params,
            headers={"User-Agent": USER_AGENT},
        )
        if not response.is_success:
            _raise(response, post)
        return decode_json(response, self.name)


def _kids(data: dict[str, Any]) -> list[Thing]:
    """The things below a comment: a nested listing, or "" when none, or the
    list :func:`_nest` attached."""
    replies = data.get("replies")
    if isinstance(replies, list):
        return replies
    if isinstance(replies, dict):
        return (replies.get("data") or {}).get("children") or []
    return []


def _cut_below(kids: list[Thing]) -> bool:
    """True when the replies hold a "continue this thread" placeholder."""
    return any(
        k.get("kind") == "more" and not (k.get("data") or {}).get("children")
        for k in kids
    )


def _direct_replies(kids: list[Thing]) -> int:
    count = 0
    for kid in kids:
        if kid.get("kind") == "t1":
            count += 1
        elif kid.get("kind") == "more":
            count += len((kid.get("data") or {}).get("children") or [])
    return count


def _nest(flat: list[Thing]) -> list[Thing]:
    """Put morechildren's flat answer back into a tree.

    Things whose parent is in the answer go under it, in answer order; the
    rest are the placeholder's own level.
    """
    by_name = {
        t["data"]["name"]: t
        for t in flat
        if t.get("kind") == "t1" and (t.get("data") or {}).get("name")
    }
    top: list[Thing] = []
    for thing in flat:
        data = thing.get("data") or {}
        parent = by_name.get(data.get("parent_id", ""))
        if parent is None or parent is thing:
            top.append(thing)
            continue
        siblings = parent["data"].get("replies")
        if not isinstance(siblings, list):
            siblings = parent["data"]["replies"] = []
        siblings.append(thing)
    return top


def _removed(data: dict[str, Any]) -> bool:
    return data.get("body") in _REMOVED


def _comment(data: dict[str, Any], post: str, depth: int, replies: int) -> Comment:
    parent = data.get("parent_id") or f"t3_{post}"
    author = data.get("author")
    body_html = data.get("body_html")
    if body_html and body_html.lstrip().startswith("&lt;"):
        # Without raw_json the markup arrives escaped once more.
        body_html = html.unescape(body_html)
    permalink = data.get("permalink") or f"/comments/{post}/_/{data['id']}/"
    return Comment(
        id=data["id"],
        parent_id=parent.split("_", 1)[-1],
        depth=depth,
        author=None if author in _REMOVED else author,
        published_at=from_epoch(float(data.get("created_utc", 0))),
        text=plain_text(body_html) if body_html else text_body(data.get("body")),
        permalink=SITE + permalink,
        likes=data.get("score"),
        replies=replies,
    )


def _raise_api_errors(errors: list[Any]) -> None:
    """morechildren reports failures inside a 200 answer."""
    if not errors:
        return
    codes = " ".join(str(e[0]) if isinstance(e, list) and e else str(e) for e in errors)
    if "RATELIMIT" in codes:
        raise TransientSourceError("Reddit rate limit reached")
    raise PermanentSourceError(f"Reddit could not expand hidden comments: {codes}")


def _raise(response: httpx.Response, post: str) -> None:
    status = response.status_code
    reason = error_body(response).get("reason")
    if status == 403:
        if reason == "private":
            raise PermanentSourceError("the subreddit is private")
        if reason == "quarantined":
            raise PermanentSourceError(
                "the subreddit is quarantined and needs a signed-in account"
            )
        if reason == "gold_only":
            raise PermanentSourceError("the subreddit is only open to premium members")
        raise PermanentSourceError("Reddit refused access to this post (HTTP 403)")
    if status == 404:
        if reason == "banned":
            raise PermanentSourceError("the subreddit is banned")
        raise PermanentSourceError(f"Reddit post {post} does not exist")
    # Reddit announces its reset as seconds from now, not an epoch.
    wait = None
    if retry_after(response) is None:
        try:
            wait = float(response.headers.get("x-ratelimit-reset", ""))
        except ValueError:
            wait = None
    raise_for_status(response, Reddit.name, wait=wait)
