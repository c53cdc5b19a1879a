"""Which adapter handles a URL, what the platforms list shows, and the
settings each adapter gets."""

from __future__ import annotations

import pytest

from exporthub.config import Settings
from exporthub.sources import detect, platforms
from exporthub.sources.registry import ADAPTERS

KEYS = ["hackernews", "youtube", "reddit", "bluesky", "github", "mastodon"]


def test_platforms_lists_every_adapter() -> None:
    assert [p["key"] for p in platforms()] == KEYS


def test_platforms_show_the_common_options_for_each() -> None:
    for listed in platforms():
        assert set(listed["options"]) >= {
            "replies",
            "limit",
            "minTimestamp",
            "maxTimestamp",
        }


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://news.ycombinator.com/item?id=8863", "hackernews"),
        ("https://www.youtube.com/watch?v=M7lc1UVf-VE", "youtube"),
        ("https://www.reddit.com/r/Python/comments/1b2c3d4/x/", "reddit"),
        ("https://bsky.app/profile/bsky.app/post/3l6oveex3ii2l", "bluesky"),
        ("https://github.com/python/cpython/issues/1", "github"),
        ("https://mastodon.social/@Gargron/1", "mastodon"),
    ],
)
def test_detect_picks_the_platform(url: str, key: str) -> None:
    adapter, _ = detect(url)
    assert adapter.key == key


def test_every_adapter_example_is_detected_as_its_own() -> None:
    for adapter in ADAPTERS:
        for example in adapter.examples:
            assert detect(example)[0] is adapter


def test_api_bases_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTHUB_YOUTUBE_API", "http://127.0.0.1:9/youtube/v3")
    settings = Settings.from_env()
    assert settings.source_apis["youtube"] == "http://127.0.0.1:9/youtube/v3"


def test_mastodon_base_defaults_to_the_server_in_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EXPORTHUB_MASTODON_API", raising=False)
    assert Settings.from_env().source_apis["mastodon"] == ""


def test_secrets_come_from_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORTHUB_YOUTUBE_API_KEY", "yt-key")
    monkeypatch.setenv("EXPORTHUB_GITHUB_TOKEN", "gh-token")
    secrets = Settings.from_env().source_secrets
    assert (secrets["youtube"], secrets["github"]) == ("yt-key", "gh-token")
