"""The dashboard page in a real headless Chromium against a real server,
with Hacker News played by the local fixture."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openpyxl
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from browser import DESKTOP, PHONE, chromium
from hn_fixture import HackerNewsFixture, serve_hackernews
from servers import RunningServer, run_server, stop
from threads import MISSING_STORY, flat_thread, story_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 20_000
SERVER_SETTINGS = {
    "EXPORTHUB_PROGRESS_INTERVAL": "0.2",
    "EXPORTHUB_OUTBOX_INTERVAL": "0.1",
    # Tests share one server and some leave jobs held at fixture gates;
    # enough workers that a held job never keeps another test's job queued.
    "EXPORTHUB_WORKER_CONCURRENCY": "16",
}
HELD_STORY = 2
# The third of a flat thread of eight: holding it stops the job at 25 percent.
THIRD_COMMENT = 13
HELD_THIRD_COMMENT = 23
SCREENSHOT_DIR = os.environ.get("EXPORTHUB_SCREENSHOT_DIR")
WRONG_KEY_MESSAGE = (
    "That API key was not accepted. Check that you copied all of it, or create "
    "a new one with exporthub user create EMAIL."
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def hn() -> Iterator[HackerNewsFixture]:
    with serve_hackernews({**flat_thread(), **flat_thread(HELD_STORY)}) as fixture:
        yield fixture


@pytest.fixture(autouse=True)
def open_gates(hn: HackerNewsFixture) -> Iterator[None]:
    yield
    for gate in hn.gates.values():
        gate.set()
    hn.gates.clear()


@pytest.fixture(scope="module")
def server(tmp_path_factory, hn: HackerNewsFixture) -> Iterator[RunningServer]:
    """One server for the module; each test has a user of its own."""
    with run_server(
        tmp_path_factory.mktemp("web") / "data",
        EXPORTHUB_HACKERNEWS_API=hn.base_url,
        **SERVER_SETTINGS,
    ) as running:
        yield running


@pytest.fixture
def user(server: RunningServer) -> dict[str, str]:
    return server.create_user(f"{uuid.uuid4().hex[:12]}@example.com")


def open_page(browser: Browser, server: RunningServer, size=DESKTOP) -> Page:
    context = browser.new_context(viewport=size, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url)
    return page


@pytest.fixture
def page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    page = open_page(browser, server)
    try:
        yield page
    finally:
        page.context.close()


def sign_in(page: Page, api_key: str) -> None:
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)


def start_export(page: Page, url: str) -> None:
    page.get_by_label("Post or video URL").fill(url)
    page.get_by_role("button", name="Export comments").click()


def job_item(page: Page, url: str):
    return page.locator("#activity li.job").filter(
        has=page.get_by_role("link", name=url, exact=True)
    )


def test_the_page_is_served_with_a_strict_content_security_policy(server) -> None:
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    assert '<script src="/static/centrifuge.js" defer></script>' in response.text


def test_the_vendored_centrifuge_client_is_the_npm_build_with_its_license(
    server,
) -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor_centrifuge.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    served = httpx.get(server.url + "/static/centrifuge.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.text.startswith("/*!\n * centrifuge 5.8.0: dist/centrifuge.js")
    assert " * Copyright (c) 2023 Centrifugal Labs LTD\n" in served.text


def test_a_wrong_api_key_is_refused_in_words(page: Page) -> None:
    page.get_by_label("API key").fill("ehk_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_have_text(WRONG_KEY_MESSAGE)
    assert page.locator("#dashboard").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_the_api_key_is_kept_in_session_storage_only(page: Page, user) -> None:
    sign_in(page, user["api_key"])
    stored = page.evaluate("sessionStorage.getItem('exporthub.apiKey')")
    assert stored == user["api_key"]
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    assert page.context.cookies() == []


def test_a_reload_keeps_the_tab_signed_in(page: Page, user) -> None:
    sign_in(page, user["api_key"])
    page.reload()
    expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    assert page.locator("#sign-in").is_hidden()


def test_signing_out_forgets_the_key(page: Page, user) -> None:
    sign_in(page, user["api_key"])
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_plan_and_usage_come_from_the_snapshot_sent_on_connect(
    page: Page, user
) -> None:
    sign_in(page, user["api_key"])
    expect(page.locator("#plan-name")).to_have_text("Free")
    expect(page.locator("#plan-status")).to_have_text("Not subscribed")
    expect(page.locator("#usage-exports")).to_have_text("0 of 10")
    expect(page.locator("#usage-items")).to_have_text("0 of 5,000")
    expect(page.locator("#activity-empty")).to_be_visible()


def test_an_export_shows_its_progress_moving_then_done(page: Page, hn, user) -> None:
    gate = hn.hold(THIRD_COMMENT)
    sign_in(page, user["api_key"])
    start_export(page, story_url())
    item = job_item(page, story_url())
    expect(item.get_by_role("progressbar")).to_have_attribute(
        "value", "25", timeout=WAIT_MS
    )
    expect(item.locator(".job-counts")).to_have_text("2 of 8 comments (25%)")
    expect(item.locator(".job-status")).to_have_text("Running")
    gate.set()
    expect(item.locator(".job-status")).to_have_text("Done", timeout=WAIT_MS)
    expect(item.get_by_role("progressbar")).to_have_attribute("value", "100")
    expect(item.locator(".job-counts")).to_have_text("8 of 8 comments (100%)")
    expect(page.locator("#usage-exports")).to_have_text("1 of 10")
    expect(page.locator("#usage-items")).to_have_text("8 of 5,000")


def test_a_finished_export_offers_a_download_button_with_the_file(
    page: Page, server, user
) -> None:
    sign_in(page, user["api_key"])
    start_export(page, story_url())
    item = job_item(page, story_url())
    button = item.get_by_role("link", name="Download XLSX")
    expect(button).to_be_visible(timeout=WAIT_MS)
    listed = httpx.get(
        server.url + "/api/v3/jobs", headers={"X-AUTH-TOKEN": user["api_key"]}
    ).json()["data"][0]
    assert button.get_attribute("href") == listed["download_link"]
    with page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == f"hackernews-{listed['guid']}.xlsx"
    content = Path(download.value.path()).read_bytes()
    assert content[:4] == b"PK\x03\x04"  # an XLSX file is a ZIP archive
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (
        "ID",
        "Parent ID",
        "Depth",
        "Author",
        "Published (UTC)",
        "Text",
        "Permalink",
        "Replies",
    )
    assert [row[0] for row in rows[1:]] == [str(n) for n in range(11, 19)]
    assert rows[1][3:6] == ("user11", "2023-11-14T22:13:31+00:00", "comment 11")


def test_the_page_follows_an_export_without_polling(page: Page, user) -> None:
    requests: list[str] = []

    def record(request: Request) -> None:
        if request.resource_type in ("fetch", "xhr"):
            requests.append(f"{request.method} {request.url.split('/', 3)[3]}")

    page.on("request", record)
    sign_in(page, user["api_key"])
    start_export(page, story_url())
    item = job_item(page, story_url())
    expect(item.locator(".job-status")).to_have_text("Done", timeout=WAIT_MS)
    assert requests == ["POST api/public/auth/socket", "POST api/v3/job"]


def test_a_failing_export_shows_its_toast(page: Page, server, user) -> None:
    sign_in(page, user["api_key"])
    start_export(page, story_url(MISSING_STORY))
    toast = page.locator("#toasts .toast[data-level='error']")
    try:
        expect(toast).to_have_count(1, timeout=WAIT_MS)
    except AssertionError as exc:
        # Say what the server and the page knew when the toast did not come.
        jobs = httpx.get(
            server.url + "/api/v3/jobs", headers={"X-AUTH-TOKEN": user["api_key"]}
        ).json()
        raise AssertionError(
            f"no error toast; jobs: {jobs['data']}; "
            f"connection: {page.locator('#connection').text_content()!r}; "
            f"toasts: {page.locator('#toasts').inner_text()!r}"
        ) from exc
    expect(toast.locator(".toast-title")).to_have_text("Export failed")
    expect(toast.locator(".toast-message")).to_have_text(
        f"The export of {story_url(MISSING_STORY)} failed: "
        f"Hacker News item {MISSING_STORY} does not exist"
    )
    item = job_item(page, story_url(MISSING_STORY))
    expect(item.locator(".job-status")).to_have_text("Failed")
    expect(item.locator(".job-error")).to_have_text(
        f"Hacker News item {MISSING_STORY} does not exist."
    )


def test_an_unsupported_url_is_refused_in_words(page: Page, user) -> None:
    sign_in(page, user["api_key"])
    start_export(page, "https://example.com/a-post")
    expect(page.locator("#export-error")).to_have_text(
        "Unsupported URL 'https://example.com/a-post': exporthub exports comments "
        "from Hacker News, YouTube, Reddit, Bluesky, GitHub, Mastodon; see GET "
        "/api/v3/platforms for the URL shapes each one accepts."
    )
    expect(page.locator("#activity li.job")).to_have_count(0)


def test_a_used_up_allowance_is_refused_in_words(page: Page, server, user) -> None:
    headers = {"X-AUTH-TOKEN": user["api_key"]}
    for _ in range(10):
        created = httpx.post(
            server.url + "/api/v3/job",
            headers=headers,
            json={"url": story_url(MISSING_STORY)},
        )
        assert created.status_code == 201
    sign_in(page, user["api_key"])
    start_export(page, story_url())
    expect(page.locator("#export-error")).to_have_text(
        "Your monthly allowance is used up. The free plan allows 10 exports a "
        "month and this month's are used up; nothing was queued. Upgrade the "
        "plan or wait for the next month."
    )


def test_an_export_can_be_started_with_the_keyboard_alone(page: Page, user) -> None:
    page.keyboard.type(user["api_key"])  # the key field has focus on load
    page.keyboard.press("Enter")
    expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    page.keyboard.type(story_url())  # the URL field has focus once signed in
    page.keyboard.press("Enter")
    item = job_item(page, story_url())
    expect(item.locator(".job-status")).to_have_text("Done", timeout=WAIT_MS)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == story_url()


def test_the_page_shows_offline_when_the_server_goes_away(
    browser: Browser, tmp_path: Path, hn
) -> None:
    with run_server(tmp_path / "data", EXPORTHUB_HACKERNEWS_API=hn.base_url) as own:
        user = own.create_user("alice@example.com")
        page = open_page(browser, own)
        try:
            sign_in(page, user["api_key"])
            stop(own.process)
            expect(page.locator("#connection")).to_have_text(
                "Offline, reconnecting…", timeout=WAIT_MS
            )
            expect(page.locator("#offline")).to_be_visible()
        finally:
            page.context.close()


@pytest.mark.timeout(120)
def test_the_page_reconnects_by_itself_when_the_server_returns(
    browser: Browser, tmp_path: Path, hn
) -> None:
    data = tmp_path / "data"
    with run_server(data, EXPORTHUB_HACKERNEWS_API=hn.base_url) as first:
        user = first.create_user("alice@example.com")
        page = open_page(browser, first)
        try:
            sign_in(page, user["api_key"])
            stop(first.process)
            expect(page.locator("#connection")).to_have_text(
                "Offline, reconnecting…", timeout=WAIT_MS
            )
            with run_server(
                data, port=first.port, EXPORTHUB_HACKERNEWS_API=hn.base_url
            ) as second:
                expect(page.locator("#connection")).to_have_text(
                    "Live", timeout=WAIT_MS
                )
                expect(page.locator("#offline")).to_be_hidden()
                start_export(page, story_url())
                item = job_item(page, story_url())
                expect(item.locator(".job-status")).to_have_text(
                    "Done", timeout=WAIT_MS
                )
                assert second.port == first.port
        finally:
            page.context.close()


@pytest.mark.parametrize(
    ("name", "size"), [("desktop", DESKTOP), ("phone", PHONE)], ids=["desktop", "phone"]
)
def test_the_page_fits_the_screen_without_sideways_scrolling(
    browser: Browser, server, hn, user, name: str, size: dict[str, int]
) -> None:
    hn.hold(HELD_THIRD_COMMENT)
    page = open_page(browser, server, size)
    try:
        sign_in(page, user["api_key"])
        start_export(page, story_url())
        expect(job_item(page, story_url()).locator(".job-status")).to_have_text(
            "Done", timeout=WAIT_MS
        )
        start_export(page, story_url(MISSING_STORY))
        expect(
            job_item(page, story_url(MISSING_STORY)).locator(".job-status")
        ).to_have_text("Failed", timeout=WAIT_MS)
        start_export(page, story_url(HELD_STORY))
        expect(
            job_item(page, story_url(HELD_STORY)).get_by_role("progressbar")
        ).to_have_attribute("value", "25", timeout=WAIT_MS)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width == size["width"]
        if SCREENSHOT_DIR:
            page.screenshot(
                path=str(Path(SCREENSHOT_DIR) / f"dashboard-{name}.png"),
                full_page=True,
            )
    finally:
        page.context.close()
