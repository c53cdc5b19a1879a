"""Progress milestones are announced exactly once per job run, whatever
order progress is reported in."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporthub.accounts import create_user
from exporthub.exports import jobs
from exporthub.exports.constants import Status
from exporthub.exports.events import JobEvents
from exporthub.store import Database


@pytest.fixture
async def setting(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'test.db'}")
    await db.create()
    published: list[tuple[str, object]] = []

    async def publish(channel: str, data: object) -> None:
        published.append((channel, data))

    events = JobEvents(publish, "http://127.0.0.1:8000", db)
    user, _ = await create_user(db, "alice@example.com")
    async with db.engine.begin() as conn:
        job = await jobs.insert(
            conn,
            user_id=user.id,
            url="https://news.ycombinator.com/item?id=1",
            platform="hackernews",
            options={},
        )
    yield db, events, user, job, published
    await db.close()


def milestones(published: list[tuple[str, object]]) -> list[int]:
    return [
        data["payload"]["progress"]
        for channel, data in published
        if channel.startswith("user_notifications_channel:")
        and isinstance(data, dict)
        and data["type"] == "export_progress"
    ]


async def test_a_jump_past_several_milestones_announces_each_in_order(setting) -> None:
    _, events, user, job, published = setting
    await events.milestones(job, user, 80, 100)
    assert milestones(published) == [25, 50, 75]


async def test_progress_reported_out_of_order_announces_nothing_twice(setting) -> None:
    _, events, user, job, published = setting
    await events.milestones(job, user, 60, 100)
    await events.milestones(job, user, 30, 100)
    await events.milestones(job, user, 60, 100)
    await events.milestones(job, user, 76, 100)
    assert milestones(published) == [25, 50, 75]


async def test_progress_without_a_total_announces_nothing(setting) -> None:
    _, events, user, job, published = setting
    await events.milestones(job, user, 500, None)
    assert milestones(published) == []


async def test_a_requeued_job_that_resumes_does_not_announce_again(setting) -> None:
    db, events, user, job, published = setting
    claimed = await jobs.claim(db, "worker-a", 30)
    await events.milestones(claimed, user, 30, 100)
    requeued = await jobs.requeue(
        db, job.guid, allowed={Status.PROGRESS}, run_after=None, error="lost"
    )
    resumed = await jobs.claim(db, "worker-b", 30)
    await events.milestones(resumed, user, 55, 100)
    assert requeued.run == resumed.run == 1
    assert milestones(published) == [25, 50]


async def test_a_retry_by_the_user_is_a_new_run_with_its_own_milestones(
    setting,
) -> None:
    db, events, user, job, published = setting
    claimed = await jobs.claim(db, "worker-a", 30)
    await events.milestones(claimed, user, 100, 100)
    await jobs.fail(db, job.guid, "worker-a", error="boom", exported=100)
    retried = await jobs.requeue(
        db,
        job.guid,
        allowed={Status.ERROR},
        run_after=None,
        error=None,
        reset_attempts=True,
    )
    again = await jobs.claim(db, "worker-a", 30)
    await events.milestones(again, user, 30, 100)
    assert (retried.run, again.run) == (2, 2)
    assert milestones(published) == [25, 50, 75, 25]
