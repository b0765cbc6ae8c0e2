"""StateConfig: what both state stores are opened from, and where each one lands."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from shopsentry.config import Settings
from shopsentry.features.entity_store import LmdbEntityStore, open_entity_store
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.features.state_store import StateConfig, open_store


def test_from_settings_reads_the_state_section_the_state_dir_and_the_detector_group(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        state={"backend": "redis", "redis_url": "redis://:secret@127.0.0.1:6390/2"},
        detector={"group_id": "g1"},
    )
    config = StateConfig.from_settings(settings)
    assert config.backend == "redis" and config.group_id == "g1"
    assert config.state_dir == settings.state_dir
    assert config.redis_url.get_secret_value() == "redis://:secret@127.0.0.1:6390/2"
    assert "secret" not in repr(config)  # a logged config does not leak the password


def test_lmdb_stores_land_under_the_state_dir_keyed_by_the_group_or_the_prefix(
    tmp_path: Path,
) -> None:
    config = StateConfig("lmdb", tmp_path / "state", SecretStr("redis://unused"), "g1")
    opened = [
        open_store(config),
        open_store(config, prefix="other"),
        open_entity_store(config),
        open_entity_store(config, prefix="other"),
    ]
    try:
        assert [type(s) for s in opened] == [
            LmdbStateStore,
            LmdbStateStore,
            LmdbEntityStore,
            LmdbEntityStore,
        ]
        assert [s.path for s in opened] == [  # type: ignore[attr-defined]
            tmp_path / "state" / "g1.lmdb",
            tmp_path / "state" / "other.lmdb",
            tmp_path / "state" / "g1.entities.lmdb",
            tmp_path / "state" / "other.entities.lmdb",
        ]
    finally:
        for store in opened:
            store.close()
