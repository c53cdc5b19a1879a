"""The unmodified `centrifuge` client from npm, under Node, follows a job."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hn_fixture import STORY_ID, serve_hackernews
from servers import run_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

NODE_DIR = Path(__file__).parent / "node"


def test_the_npm_client_receives_the_job_events_on_its_server_side_subscriptions(
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    assert node, "Node.js is required for this test"
    assert (NODE_DIR / "node_modules" / "centrifuge").is_dir(), "run make test"
    with (
        serve_hackernews() as hn,
        run_server(
            tmp_path / "data",
            EXPORTHUB_HACKERNEWS_API=hn.base_url,
            EXPORTHUB_PROGRESS_INTERVAL="60",
        ) as server,
    ):
        alice = server.create_user("alice@example.com")
        source = f"https://news.ycombinator.com/item?id={STORY_ID}"
        result = subprocess.run(
            [node, "follow_job.mjs", server.url, alice["api_key"], source],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    uuid = alice["uuid"]
    assert sorted(seen["subscribed"]) == sorted(
        [
            f"user:{uuid}",
            f"exports:{uuid}",
            f"webhooks:{uuid}",
            f"user_notifications_channel:{uuid}",
            f"user_dashboard_channel:{uuid}",
        ]
    )
    exports = [r for r in seen["received"] if r["channel"] == f"exports:{uuid}"]
    summary = [(r["data"]["event"], r["data"]["status"], r["offset"]) for r in exports]
    assert summary == [("job.created", "queueing", 1), ("job.finished", "done", 2)]
    finished = exports[-1]["data"]
    assert finished["details"]["totalExported"] == 5
    assert finished["url"] == finished["details"]["download_link"]
