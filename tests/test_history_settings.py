"""History size and TTL per channel namespace, from the environment."""

from __future__ import annotations

import os

import pytest

from exporthub.api.app import namespace_history, node_config
from exporthub.config import Settings
from exporthub.realtime import HistoryOptions


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("EXPORTHUB_"):
            monkeypatch.delenv(key)


def test_the_defaults_apply_to_every_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTHUB_HISTORY_SIZE", "30")
    monkeypatch.setenv("EXPORTHUB_HISTORY_TTL", "90")
    assert namespace_history(Settings.from_env()) == {
        "exports": HistoryOptions(30, 90),
        "webhooks": HistoryOptions(30, 90),
        "user": HistoryOptions(30, 90),
        "user_notifications_channel": HistoryOptions(30, 90),
        "user_dashboard_channel": HistoryOptions(30, 90),
        "export.*": HistoryOptions(30, 90),
    }


def test_a_namespace_setting_overrides_size_and_ttl_of_that_namespace_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTHUB_HISTORY_EXPORTS", "200/600s")
    monkeypatch.setenv("EXPORTHUB_HISTORY_JOB", "20/2m")
    monkeypatch.setenv("EXPORTHUB_HISTORY_USER_DASHBOARD_CHANNEL", "5/1h")
    history = namespace_history(Settings.from_env())
    assert history["exports"] == HistoryOptions(200, 600)
    assert history["export.*"] == HistoryOptions(20, 120)
    assert history["user_dashboard_channel"] == HistoryOptions(5, 3600)
    assert history["webhooks"] == HistoryOptions(100, 600)


def test_a_namespace_set_to_zero_keeps_no_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTHUB_HISTORY_WEBHOOKS", "0/0")
    config = node_config(Settings.from_env())
    assert config.namespaces["webhooks"].history.enabled is False
    assert config.namespaces["exports"].history.enabled is True


def test_a_malformed_namespace_setting_stops_with_the_expected_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTHUB_HISTORY_EXPORTS", "200")
    with pytest.raises(SystemExit) as stopped:
        Settings.from_env()
    assert str(stopped.value) == (
        "EXPORTHUB_HISTORY_EXPORTS must be SIZE/TTL such as 200/600s or 50/10m, "
        "not '200'"
    )


def test_a_setting_for_an_unknown_namespace_stops_with_the_names_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTHUB_HISTORY_EXPORT", "10/10s")
    with pytest.raises(SystemExit) as stopped:
        namespace_history(Settings.from_env())
    assert str(stopped.value) == (
        "EXPORTHUB_HISTORY_EXPORT: no such channel namespace; the names are "
        "EXPORTS, WEBHOOKS, USER, USER_NOTIFICATIONS_CHANNEL, "
        "USER_DASHBOARD_CHANNEL, JOB"
    )
