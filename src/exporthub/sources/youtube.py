"""YouTube, through the Data API v3 with an API key.

``videos`` gives the comment count, ``commentThreads`` pages through the
top-level comments newest first with up to five replies inlined, and
``comments`` lists the replies of a thread when more exist than were
inlined. YouTube threads are one level deep: every reply answers the
top-level comment.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    PermanentSourceError,
    TransientSourceError,
    plain_text,
)
from exporthub.sources.common import admitted, after_window, parse_time
from exporthub.sources.http import decode_json, raise_for_status, retry_after, send

DEFAULT_API = "https://www.googleapis.com/youtube/v3"
PERMALINK = "https://www.youtube.com/watch?v={video}&lc={comment}"
PAGE_SIZE = 100
# The daily quota resets at midnight Pacific time.
QUOTA_ZONE = "America/Los_Angeles"

_ID = r"([A-Za-z0-9_-]{11})"
_HOST = r"(?:https?://)?(?:(?:www|m)\.)?youtube\.com"
_TAIL = r"/?(?:[?#].*)?$"
_URLS = (
    re.compile(rf"^{_HOST}/watch/?\?(?:[^#]*&)?v={_ID}(?:[&#].*)?$", re.IGNORECASE),
    re.compile(rf"^{_HOST}/shorts/{_ID}{_TAIL}", re.IGNORECASE),
    re.compile(rf"^(?:https?://)?youtu\.be/{_ID}{_TAIL}", re.IGNORECASE),
)

_QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_KEY_REASONS = frozenset({"keyInvalid", "API_KEY_INVALID", "keyExpired"})
_GONE_REASONS = frozenset(
    {
        "videoNotFound",
        "commentThreadNotFound",
        "parentCommentNotFound",
        "commentNotFound",
    }
)


class YouTube(Adapter):
    """Comments of a YouTube video or short."""

    key = "youtube"
    name = "YouTube"
    url_patterns = (
        "https://www.youtube.com/watch?v={video}",
        "https://youtu.be/{video}",
        "https://www.youtube.com/shorts/{video}",
    )
    examples = ("https://www.youtube.com/watch?v=dQw4w9WgXcQ",)
    extra_columns = ("likes", "replies")
    default_api = DEFAULT_API
    secret_setting = "EXPORTHUB_YOUTUBE_API_KEY"
    secret_required = True

    @classmethod
    def parse(cls, url: str) -> str | None:
        for pattern in _URLS:
            match = pattern.match(url)
            if match:
                return match.group(1)
        return None

    def comments(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        return admitted(self._walk(ref, options), options)

    async def _walk(
        self, video: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        if not self.secret:
            raise PermanentSourceError(
                f"no YouTube API key is configured ({self.secret_setting})"
            )
        found = await self._get("videos", {"part": "statistics", "id": video})
        items = (found or {}).get("items") or []
        if not items:
            raise PermanentSourceError(
                f"YouTube video {video} does not exist or is private"
            )
        count = (items[0].get("statistics") or {}).get("commentCount")
        self.total = int(count) if count is not None else None

        params: dict[str, Any] = {
            "part": "snippet,replies",
            "videoId": video,
            "maxResults": PAGE_SIZE,
            "order": "time",
            "textFormat": "html",
        }
        while True:
            page = await self._get("commentThreads", params) or {}
            threads = page.get("items") or []
            for thread in threads:
                snippet = thread.get("snippet") or {}
                top = snippet.get("topLevelComment") or {}
                reply_count = int(snippet.get("totalReplyCount") or 0)
                comment = _comment(top, video, video, 0, reply_count)
                yield comment
                if (
                    options.replies
                    and reply_count
                    and not after_window(comment.published_at, options)
                ):
                    for reply in await self._replies(video, thread, reply_count):
                        yield _comment(reply, video, comment.id, 1, 0)
            token = page.get("nextPageToken")
            if not token or _before_window(threads, options):
                return
            params["pageToken"] = token

    async def _replies(
        self, video: str, thread: dict[str, Any], reply_count: int
    ) -> list[dict[str, Any]]:
        """Every reply of ``thread``, oldest first as YouTube shows them."""
        replies = (thread.get("replies") or {}).get("comments") or []
        if len(replies) < reply_count:
            replies = []
            params: dict[str, Any] = {
                "part": "snippet",
                "parentId": thread["snippet"]["topLevelComment"]["id"],
                "maxResults": PAGE_SIZE,
                "textFormat": "html",
            }
            while True:
                # A thread deleted since its page was read has no replies left.
                page = await self._get("comments", params, missing_ok=True)
                if page is None:
                    break
                replies.extend(page.get("items") or [])
                token = page.get("nextPageToken")
                if not token:
                    break
                params["pageToken"] = token
        return sorted(replies, key=lambda r: parse_time(r["snippet"]["publishedAt"]))

    async def _get(
        self, resource: str, params: dict[str, Any], *, missing_ok: bool = False
    ) -> Any:
        response = await send(
            self.http,
            f"{self.base_url}/{resource}",
            platform=self.name,
            params={**params, "key": self.secret},
        )
        if not response.is_success:
            if missing_ok and response.status_code == 404:
                return None
            _raise(response)
        return decode_json(response, self.name)


def _before_window(threads: list[dict[str, Any]], options: ExportOptions) -> bool:
    """True when a page of top-level comments, newest first, is all older
    than ``minTimestamp`` so later pages cannot hold anything admitted.

    Only without replies: a new reply can sit under an old comment. The whole
    page is checked, not its last item, so a pinned old comment on top of
    newer ones does not end the walk early.
    """
    if options.replies or options.min_timestamp is None or not threads:
        return False
    return all(
        parse_time(
            t["snippet"]["topLevelComment"]["snippet"]["publishedAt"]
        ).timestamp()
        < options.min_timestamp
        for t in threads
    )


def _comment(
    item: dict[str, Any], video: str, parent: str, depth: int, replies: int
) -> Comment:
    snippet = item.get("snippet") or {}
    return Comment(
        id=item["id"],
        parent_id=parent,
        depth=depth,
        author=snippet.get("authorDisplayName"),
        published_at=parse_time(snippet["publishedAt"]),
        text=plain_text(snippet.get("textDisplay")),
        permalink=PERMALINK.format(video=video, comment=item["id"]),
        likes=int(snippet.get("likeCount") or 0),
        replies=replies,
    )


def _reasons(body: dict[str, Any]) -> set[str]:
    """Every reason code in a Google API error body, old style and new."""
    error = body.get("error") or {}
    if not isinstance(error, dict):
        return set()
    found = {e.get("reason", "") for e in error.get("errors") or []}
    found.update(d.get("reason", "") for d in error.get("details") or [])
    return found


def _raise(response: httpx.Response) -> None:
    try:
        body = decode_json(response, YouTube.name)
    except PermanentSourceError:
        body = {}
    reasons = _reasons(body if isinstance(body, dict) else {})
    if reasons & _QUOTA_REASONS:
        raise TransientSourceError(
            "YouTube API daily quota exceeded", retry_after=_quota_reset()
        )
    if reasons & _RATE_REASONS:
        raise TransientSourceError(
            "YouTube API rate limit exceeded", retry_after=retry_after(response)
        )
    if "commentsDisabled" in reasons:
        raise PermanentSourceError("comments are disabled for this YouTube video")
    if reasons & _KEY_REASONS:
        raise PermanentSourceError("YouTube API key is invalid")
    if reasons & _GONE_REASONS or response.status_code == 404:
        raise PermanentSourceError("YouTube video does not exist or was removed")
    if response.status_code == 403:
        message = plain_text((body.get("error") or {}).get("message"))
        raise PermanentSourceError(
            f"YouTube refused access to this video's comments: {message}"
            if message
            else "YouTube refused access to this video's comments"
        )
    raise_for_status(response, YouTube.name)


def _quota_reset() -> float | None:
    """Seconds until the next midnight in YouTube's quota time zone."""
    try:
        zone = ZoneInfo(QUOTA_ZONE)
    except ZoneInfoNotFoundError:
        return None
    now = datetime.now(zone)
    midnight = (now + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    # Subtracting in the zone itself would ignore a DST change in between.
    return (midnight.astimezone(UTC) - now.astimezone(UTC)).total_seconds()
