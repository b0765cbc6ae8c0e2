from __future__ import annotations

import duckdb

from shopsentry.lake.export import export_to_lake
from shopsentry.lake.partitions import list_partitions, verify_files
from shopsentry.lake.storage import LakeConfig, open_tier
from shopsentry.warehouse.db import connect
from shopsentry.warehouse.loader import LoaderConfig, load_from_log, raw_counts
from tests.unit.warehouse.conftest import publish
from tests.unit.warehouse.factories import START, make_events


def lake_counts(settings) -> dict[str, int]:
    storage = open_tier(LakeConfig.from_settings(settings), "warm")
    counts: dict[str, int] = {}
    con = duckdb.connect()
    for m in list_partitions(storage):
        for key in m.file_keys():
            n = con.execute(f"select count(*) from read_parquet('{storage.duckdb_path(key)}')")
            counts[m.table] = counts.get(m.table, 0) + n.fetchall()[0][0]
    return counts


def test_every_loaded_row_lands_once_in_a_partition_per_table_and_day(loaded) -> None:
    result = export_to_lake(LakeConfig.from_settings(loaded))
    with connect(loaded.warehouse_path, read_only=True) as con:
        warehouse = {k: v for k, v in raw_counts(con).items() if v}
    assert lake_counts(loaded) == warehouse
    days = {
        m.date
        for m in list_partitions(
            open_tier(LakeConfig.from_settings(loaded), "warm"), "purchase_events"
        )
    }
    assert days == {"2026-11-20", "2026-11-21"}
    assert result.rows_written == sum(warehouse.values())


def test_files_are_compressed_parquet_with_checksums_in_the_manifest(loaded) -> None:
    export_to_lake(LakeConfig.from_settings(loaded))
    storage = open_tier(LakeConfig.from_settings(loaded), "warm")
    manifests = list_partitions(storage)
    assert manifests and all(verify_files(storage, m) == [] for m in manifests)
    key = manifests[0].file_keys()[0]
    meta = duckdb.sql(
        f"select compression from parquet_metadata('{storage.duckdb_path(key)}') limit 1"
    ).fetchall()
    assert meta[0][0].upper() == "ZSTD"


def test_a_repeated_export_writes_nothing_and_leaves_no_duplicate(loaded) -> None:
    export_to_lake(LakeConfig.from_settings(loaded))
    before = open_tier(LakeConfig.from_settings(loaded), "warm").list()
    again = export_to_lake(LakeConfig.from_settings(loaded))
    assert again.written == []
    assert open_tier(LakeConfig.from_settings(loaded), "warm").list() == before


def test_new_rows_rewrite_only_their_partition(settings, memlog) -> None:
    publish(memlog, make_events(days=1))
    load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=1.0)
    export_to_lake(LakeConfig.from_settings(settings))
    later = make_events(start=START.replace(day=22), days=1, seed=9)
    publish(memlog, later)
    load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=1.0)
    result = export_to_lake(LakeConfig.from_settings(settings))
    assert result.written and all("date=2026-11-22" in p for p in result.written)
    with connect(settings.warehouse_path, read_only=True) as con:
        warehouse = {k: v for k, v in raw_counts(con).items() if v}
    assert lake_counts(settings) == warehouse


def test_a_corrupted_lake_file_is_reported(loaded) -> None:
    export_to_lake(LakeConfig.from_settings(loaded))
    storage = open_tier(LakeConfig.from_settings(loaded), "warm")
    manifest = list_partitions(storage, "purchase_events")[0]
    storage.put_bytes(manifest.file_keys()[0], b"not parquet")
    assert verify_files(storage, manifest)
