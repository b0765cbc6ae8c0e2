"""Settings: one place for every default, a TOML file read without touching the process
environment, one clear error for a bad file, old names accepted, secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopsentry.config import Settings, load_settings
from shopsentry.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SHOPSENTRY_"):
            monkeypatch.delenv(key)


def test_load_settings_reads_the_file_without_writing_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[api]\nhost = "0.0.0.0"\nport = 8123\n')
    settings = load_settings(path)
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8123)
    assert "SHOPSENTRY_CONFIG" not in os.environ
    assert Settings().api.port == 8000  # the next settings built do not see the file


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[api]\nhost = "0.0.0.0"\nport = 8123\n')
    monkeypatch.setenv("SHOPSENTRY_API__PORT", "9001")
    settings = load_settings(path)
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 9001)


def test_every_listener_default_is_a_setting() -> None:
    settings = Settings()
    assert (settings.detector.metrics_host, settings.detector.metrics_port) == ("127.0.0.1", 9400)
    assert (settings.notifier.metrics_host, settings.notifier.metrics_port) == ("127.0.0.1", 9450)
    assert (settings.api.host, settings.api.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[api\nport = 1\n", "is not valid TOML"),
        (b'[api]\nhost = "caf\xe9"\n', "is not UTF-8 text"),
    ],
)
def test_a_bad_file_is_one_config_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_the_state_backend_is_lmdb_and_local_is_its_old_name() -> None:
    assert Settings().state.backend == "lmdb"
    assert Settings(state={"backend": "local"}).state.backend == "lmdb"  # type: ignore[arg-type]


def test_redacted_masks_userinfo_and_secret_query_values() -> None:
    settings = Settings(
        bus="kafka://svc:hunter2@broker:9092",
        notifier={"webhook_urls": ("http://user:pass@hooks.example/h?token=abc&team=ops",)},  # type: ignore[arg-type]
        model={"tracking_uri": "postgresql://ml:pw@db/mlflow"},  # type: ignore[arg-type]
    )
    text = str(settings.redacted())
    for secret in ("hunter2", "user:pass", "token=abc", "ml:pw"):
        assert secret not in text
    data = settings.redacted()
    assert data["notifier"]["webhook_urls"] == ["http://***@hooks.example/h?token=***&team=ops"]
    assert data["bus"] == "kafka://***@broker:9092"
