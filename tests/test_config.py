"""Settings: the generated token secret, and settings refused at start."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exporthub.config import Settings


def test_a_generated_secret_is_kept_and_read_back(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).ensure_token_secret()
    again = Settings(data_dir=tmp_path).ensure_token_secret()
    assert first == again
    assert len(first) == 64
    assert (tmp_path / "token_secret").stat().st_mode & 0o777 == 0o600


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        found = set(
            pool.map(
                lambda _: Settings(data_dir=tmp_path).ensure_token_secret(), range(8)
            )
        )
    assert len(found) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token_secret"]


def test_an_unsupported_database_url_stops_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORTHUB_DATABASE_URL", "mysql://x/y")
    with pytest.raises(SystemExit) as stopped:
        Settings.from_env()
    assert str(stopped.value) == (
        "EXPORTHUB_DATABASE_URL='mysql://x/y': use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DATABASE"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nan", "EXPORTHUB_DRAIN_TIMEOUT must be a finite number, not 'nan'"),
        ("inf", "EXPORTHUB_DRAIN_TIMEOUT must be a finite number, not 'inf'"),
        ("-1", "EXPORTHUB_DRAIN_TIMEOUT must not be negative, not -1.0"),
        ("soon", "EXPORTHUB_DRAIN_TIMEOUT must be a number, not 'soon'"),
    ],
)
def test_a_drain_timeout_that_is_no_length_of_time_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str, message: str
) -> None:
    monkeypatch.setenv("EXPORTHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXPORTHUB_DRAIN_TIMEOUT", raw)
    with pytest.raises(SystemExit) as stopped:
        Settings.from_env()
    assert str(stopped.value) == message


def test_a_drain_timeout_of_zero_is_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPORTHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXPORTHUB_DRAIN_TIMEOUT", "0")
    assert Settings.from_env().drain_timeout == 0.0
