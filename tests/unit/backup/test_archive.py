from __future__ import annotations

import shutil
import sqlite3

import pytest

from shopsentry.api.consumer import store_topics
from shopsentry.api.read_model import AlertReadModel
from shopsentry.api.security import KeyStore
from shopsentry.backup import (
    BackupInvalid,
    create_backup,
    list_backups,
    restore_backup,
    verify_backup,
)
from shopsentry.bus.base import TopicPartition
from shopsentry.features.lmdb_store import LmdbStateStore
from shopsentry.lake.storage import LakeConfig, open_tier
from shopsentry.stream.base import Checkpoint
from shopsentry.warehouse.db import connect
from shopsentry.warehouse.loader import raw_counts


@pytest.fixture
def system(loaded, memlog, tmp_path):
    """A data dir with every part: warehouse, alerts, keys, registry, state; the backups
    off it (a backup in the data dir dies with it)."""
    lake = loaded.lake.model_copy(update={"url": str(tmp_path / "lake")})
    settings = loaded.model_copy(update={"lake": lake})
    api = settings.data_dir / "api"
    model = AlertReadModel(api / "alerts.db", topics=store_topics(settings.topics))
    topics = set(store_topics(settings.topics).values())
    records = [r for t in topics for r in memlog.records(t)]
    positions = {r.tp: r.offset + 1 for r in records}
    model.save(Checkpoint(changes=records, positions=positions, expected={}, outbox_id="fill"))
    model.close()
    keys = KeyStore(api / "keys.db")
    token = keys.create("analyst", name="drill").token
    keys.close()
    store = LmdbStateStore(settings.state_dir / f"{settings.detector.group_id}.lmdb")
    purchases = TopicPartition(settings.topics.purchase_events.name, 0)
    store.save({"purchase": {"u001": b"state-1"}}, {purchases: 10})
    store.close()
    db = sqlite3.connect(settings.data_dir / "mlflow.db")
    db.execute("create table registered_models (name text)")
    db.execute("insert into registered_models values ('shopsentry-fraud')")
    db.commit()
    db.close()
    (settings.mlflow_artifact_dir / "1").mkdir(parents=True)
    (settings.mlflow_artifact_dir / "1" / "model.json").write_text("{}")
    return settings, token


def snapshot_of(settings) -> dict[str, object]:
    with connect(settings.warehouse_path, read_only=True) as con:
        counts = raw_counts(con)
    alerts = sqlite3.connect(settings.data_dir / "api" / "alerts.db")
    n_alerts = alerts.execute("select count(*) from alerts").fetchall()[0][0]
    alerts.close()
    store = LmdbStateStore(settings.state_dir / f"{settings.detector.group_id}.lmdb")
    state = dict(store.items("purchase"))
    store.close()
    return {"raw": counts, "alerts": n_alerts, "state": state}


def test_a_restore_brings_every_part_back_and_rewinds_the_groups(system, memlog) -> None:
    settings, token = system
    before = snapshot_of(settings)
    manifest = create_backup(settings)
    assert set(manifest.parts) >= {"warehouse", "alerts", "api_keys", "registry", "state"}
    state_offsets = manifest.parts["state"].offsets[settings.detector.group_id]
    assert state_offsets[f"{settings.topics.purchase_events.name}:0"] == 11
    assert verify_backup(settings) == (manifest.id, [])

    shutil.rmtree(settings.data_dir)
    memlog.committed.clear()
    result = restore_backup(settings)

    assert result.id == manifest.id
    assert snapshot_of(settings) == before
    keys = KeyStore(settings.data_dir / "api" / "keys.db")
    assert keys.authenticate(token) is not None
    keys.close()
    assert (settings.mlflow_artifact_dir / "1" / "model.json").exists()
    purchases = TopicPartition(settings.topics.purchase_events.name, 0)
    assert memlog.committed[(settings.detector.group_id, purchases)] == 11
    loader = memlog.committed[(settings.warehouse.loader_group_id, purchases)]
    assert loader == memlog.describe_topic(purchases.topic).partitions[0].end_offset


def corrupt(settings, backup_id: str, part: str) -> None:
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    key = f"{backup_id}/{part}.tar.gz"
    data = bytearray(storage.get_bytes(key))
    data[len(data) // 2] ^= 0xFF
    storage.put_bytes(key, bytes(data))


def test_a_corrupted_archive_is_reported_and_refused_leaving_the_data_dir_alone(system) -> None:
    settings, _ = system
    manifest = create_backup(settings)
    corrupt(settings, manifest.id, "alerts")
    _, problems = verify_backup(settings, manifest.id)
    assert problems == ["part alerts: checksum mismatch"]
    before = snapshot_of(settings)
    with pytest.raises(BackupInvalid, match="corrupt or partial: part alerts"):
        restore_backup(settings, manifest.id)
    assert snapshot_of(settings) == before


def test_a_backup_without_its_manifest_is_partial_and_not_the_latest(system) -> None:
    settings, _ = system
    good = create_backup(settings)
    partial = create_backup(settings)
    open_tier(LakeConfig.from_settings(settings), "backups").delete([f"{partial.id}/manifest.json"])
    infos = {i.id: i.complete for i in list_backups(settings)}
    assert infos == {good.id: True, partial.id: False}
    assert verify_backup(settings, partial.id)[1] == ["no manifest (the backup never finished)"]
    with pytest.raises(BackupInvalid):
        restore_backup(settings, partial.id)
    assert restore_backup(settings).id == good.id


def test_a_tampered_manifest_fails_its_checksum(system) -> None:
    settings, _ = system
    manifest = create_backup(settings)
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    key = f"{manifest.id}/manifest.json"
    storage.put_bytes(key, storage.get_bytes(key).replace(b'"bytes": ', b'"bytes": 1', 1))
    assert verify_backup(settings, manifest.id)[1] == ["manifest does not match its checksum"]


def test_a_store_the_backup_lacks_is_moved_aside_not_mixed_in(system) -> None:
    settings, _ = system
    alerts = settings.data_dir / "api" / "alerts.db"
    moved = alerts.with_name("later.db")
    alerts.rename(moved)
    manifest = create_backup(settings)
    assert "alerts" not in manifest.parts
    moved.rename(alerts)  # the newer store that backup never saw
    restore_backup(settings, manifest.id)
    assert not alerts.exists()
    assert (settings.data_dir / f".pre-restore-{manifest.id}" / "alerts" / "alerts.db").exists()


def test_only_the_newest_backups_are_kept(system) -> None:
    settings = system[0].model_copy(
        update={"lake": system[0].lake.model_copy(update={"backups_kept": 2})}
    )
    ids = [create_backup(settings).id for _ in range(3)]
    assert [i.id for i in list_backups(settings)] == ids[:0:-1]
