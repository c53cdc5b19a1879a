"""GitHub issues and pull requests, through the REST API.

The issue gives the comment count; its comments come oldest first, a page
at a time, following the ``Link: rel="next"`` header. Pull requests are
issues to this API, so their conversation comments come the same way
(review comments on the diff are a separate resource and are not
exported). Comments are flat: every one has depth 0.

Bodies are Markdown, kept as written with line endings normalised. A token
in ``EXPORTHUB_GITHUB_TOKEN`` is optional; it raises the rate limit and
opens private repositories the token can read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from exporthub.sources.base import (
    Adapter,
    Comment,
    ExportOptions,
    PermanentSourceError,
    TransientSourceError,
    iso_utc,
)
from exporthub.sources.common import (
    admitted,
    after_window,
    from_epoch,
    parse_time,
    seconds_until,
)
from exporthub.sources.http import (
    decode_json,
    error_body,
    raise_for_status,
    retry_after,
    same_origin,
    send,
)

DEFAULT_API = "https://api.github.com"
PAGE_SIZE = 100
API_VERSION = "2022-11-28"
USER_AGENT = "exporthub (self-hosted comment export service)"

_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?github\.com/([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))"
    r"/([A-Za-z0-9._-]{1,100})/(?:issues|pull)/([0-9]{1,10})"
    r"(?:/[^?#]*)?(?:[?#].*)?$",
    re.IGNORECASE,
)
_REF = re.compile(r"^([^/#]+)/([^/#]+)#([0-9]+)$")


class GitHub(Adapter):
    """Comments of a GitHub issue or pull request."""

    key = "github"
    name = "GitHub"
    url_patterns = (
        "https://github.com/{owner}/{repo}/issues/{number}",
        "https://github.com/{owner}/{repo}/pull/{number}",
    )
    examples = ("https://github.com/python/cpython/issues/1",)
    extra_columns = ("likes",)
    default_api = DEFAULT_API
    secret_setting = "EXPORTHUB_GITHUB_TOKEN"

    @classmethod
    def parse(cls, url: str) -> str | None:
        match = _URL.match(url)
        if not match:
            return None
        owner, repo, number = match.groups()
        # "." and ".." would climb out of the repository in the API path.
        if repo in (".", ".."):
            return None
        return f"{owner}/{repo}#{int(number)}"

    def comments(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        return admitted(self._walk(ref, options), options)

    async def _walk(
        self, ref: str, options: ExportOptions
    ) -> AsyncGenerator[Comment, None]:
        match = _REF.match(ref)
        if not match:
            raise PermanentSourceError(f"not a GitHub issue reference: {ref}")
        owner, repo, number = match.groups()
        path = f"{self.base_url}/repos/{owner}/{repo}/issues/{number}"
        issue, _ = await self._get(path, None, ref)
        self.total = (issue or {}).get("comments")

        first: dict[str, Any] = {"per_page": PAGE_SIZE}
        if options.min_timestamp is not None:
            # "since" filters on the last update, which is never before
            # creation, so it only drops comments outside the window.
            first["since"] = _github_time(options.min_timestamp)
        # Next-page links carry every parameter themselves.
        params: dict[str, Any] | None = first
        url: str | None = f"{path}/comments"
        while url:
            page, response = await self._get(url, params, ref)
            for item in page if isinstance(page, list) else []:
                comment = _comment(item, ref)
                # Comments come in creation order: the rest are later still.
                if after_window(comment.published_at, options):
                    return
                yield comment
            url = self._next(response)
            params = None

    def _next(self, response: httpx.Response) -> str | None:
        """The next page's URL, kept to the API's own origin."""
        target = response.links.get("next", {}).get("url")
        if not target:
            return None
        if not same_origin(httpx.URL(target), httpx.URL(self.base_url)):
            raise PermanentSourceError(
                "GitHub pointed the next page of comments at another site"
            )
        return target

    async def _get(
        self, url: str, params: dict[str, Any] | None, ref: str
    ) -> tuple[Any, httpx.Response]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        response = await send(
            self.http, url, platform=self.name, params=params, headers=headers
        )
        if not response.is_success:
            _raise(response, ref)
        return decode_json(response, self.name), response


def _github_time(seconds: int) -> str:
    return iso_utc(from_epoch(seconds)).replace("+00:00", "Z")


def _comment(item: dict[str, Any], ref: str) -> Comment:
    user = item.get("user") or {}
    body = item.get("body") or ""
    return Comment(
        id=str(item["id"]),
        parent_id=ref,
        depth=0,
        author=user.get("login"),
        published_at=parse_time(item["created_at"]),
        text=body.replace("\r\n", "\n").replace("\r", "\n").strip(),
        permalink=item.get("html_url") or "",
        likes=(item.get("reactions") or {}).get("total_count"),
    )


def _raise(response: httpx.Response, ref: str) -> None:
    status = response.status_code
    headers = response.headers
    message = error_body(response).get("message") or ""
    if status in (403, 429) and (
        headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in headers
        or "rate limit" in message.lower()
    ):
        wait = retry_after(response)
        if wait is None:
            wait = seconds_until(headers.get("x-ratelimit-reset"))
        raise TransientSourceError("GitHub rate limit reached", retry_after=wait)
    if status == 401:
        raise PermanentSourceError("the GitHub token is invalid or expired")
    if status == 404:
        raise PermanentSourceError(
            f"GitHub issue {ref} does not exist or is in a private repository"
        )
    if status == 410:
        raise PermanentSourceError(
            f"GitHub issue {ref} is gone: {message}"
            if message
            else f"GitHub issue {ref} was deleted"
        )
    if status == 403:
        raise PermanentSourceError(
            f"GitHub refused access: {message}" if message else "GitHub refused access"
        )
    raise_for_status(response, GitHub.name)
