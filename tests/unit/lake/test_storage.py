"""The lake on a non-local fsspec URL (``memory://``, standing in for ``s3://``)."""

from __future__ import annotations

import uuid
from datetime import date

from shopsentry.lake.partitions import list_partitions, verify_files
from shopsentry.lake.query import attach_tiers
from shopsentry.lake.retention import run_retention
from shopsentry.lake.storage import FsspecStorage, LakeConfig, open_tier, tier_url
from shopsentry.warehouse.db import connect


def test_tiers_default_to_folders_under_the_lake_url(settings) -> None:
    assert tier_url(LakeConfig.from_settings(settings), "warm") == str(
        (settings.data_dir / "lake" / "warm").resolve()
    )
    configured = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"url": "s3://b/p", "cold_url": "gs://c"})}
    )
    assert tier_url(LakeConfig.from_settings(configured), "backups") == "s3://b/p/backups"
    assert tier_url(LakeConfig.from_settings(configured), "cold") == "gs://c"


def test_put_list_get_delete_round_trip() -> None:
    storage = FsspecStorage(f"memory://lake-{uuid.uuid4().hex}")
    storage.put_bytes("a/b/c.bin", b"xyz")
    storage.put_bytes("a/d.bin", b"12")
    assert storage.list("a") == ["a/b/c.bin", "a/d.bin"]
    assert storage.get_bytes("a/b/c.bin") == b"xyz" and storage.size("a/d.bin") == 2
    storage.delete(["a/d.bin"])
    assert storage.list() == ["a/b/c.bin"]


def test_export_retention_and_tier_views_on_an_object_store_url(loaded) -> None:
    lake = loaded.lake.model_copy(
        update={"url": f"memory://lake-{uuid.uuid4().hex}", "hot_days": 0}
    )
    settings = loaded.model_copy(update={"lake": lake})
    with connect(settings.warehouse_path, read_only=True) as con:
        purchases = con.execute("select count(*) from raw.purchase_events").fetchall()[0][0]
    result = run_retention(LakeConfig.from_settings(settings), today=date(2026, 11, 22))
    assert result.kept_hot == {} and result.rows_evicted > 0
    storage = open_tier(LakeConfig.from_settings(settings), "warm")
    assert all(verify_files(storage, m) == [] for m in list_partitions(storage))
    with connect(settings.warehouse_path, read_only=True) as con:
        attach_tiers(con, LakeConfig.from_settings(settings))
        tiered = con.execute("select count(*) from tiered_purchase_events").fetchall()[0][0]
    assert tiered == purchases
