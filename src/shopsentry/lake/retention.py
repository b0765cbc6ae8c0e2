"""Move partitions down the tiers: warehouse (hot) → lake warm → lake cold.

* **hot → warm.** A RAW partition (table, day) older than ``lake.hot_days`` leaves the
  warehouse only once the lake is shown to hold every one of its rows: the partition's
  files match their manifest (size and SHA-256), and the rows DuckDB reads back from
  them include each warehouse row's key, counted and checksummed (sum of the keys'
  hashes) on both sides. A partition that fails is exported again and checked again;
  one that still fails stays hot and is reported.
* **warm → cold.** A warm partition older than ``lake.warm_days`` is copied to the cold
  URL, checked against its manifest there, published (manifest last) and only then
  deleted from warm.

Only RAW is trimmed: the marts dbt built from it (daily aggregates, facts) keep their
rows, so reports over old days still answer; queries that need the raw events of an
evicted day read them from the lake (:mod:`shopsentry.lake.query`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shopsentry.lake.export import date_predicate, export_to_lake, sql_literal
from shopsentry.lake.partitions import (
    NULL_DATE,
    PartitionManifest,
    list_partitions,
    read_manifest,
    verify_files,
    write_manifest,
)
from shopsentry.lake.storage import LakeStorage, open_tier
from shopsentry.warehouse.loader import RAW_TABLES, RawTable, ensure_raw_schema

if TYPE_CHECKING:
    import duckdb

    from shopsentry.lake.storage import LakeConfig

logger = logging.getLogger(__name__)


@dataclass
class RetentionResult:
    """What one pass moved, and what it refused to move and why."""

    today: date
    evicted: dict[str, list[str]] = field(default_factory=dict)
    rows_evicted: int = 0
    kept_hot: dict[str, str] = field(default_factory=dict)  # partition → reason
    moved_cold: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "today": self.today.isoformat(),
            "partitions_evicted": sum(len(v) for v in self.evicted.values()),
            "rows_evicted": self.rows_evicted,
            "kept_hot": dict(self.kept_hot),
            "moved_cold": list(self.moved_cold),
            "seconds": round(self.seconds, 3),
        }


def run_retention(config: LakeConfig, today: date | None = None) -> RetentionResult:
    """One pass: evict verified hot partitions, then age warm partitions into cold."""
    from shopsentry.warehouse.db import connect

    started = time.perf_counter()
    today = today or datetime.now(UTC).date()
    result = RetentionResult(today=today)
    hot_before = today - timedelta(days=config.lake.hot_days)
    warm = open_tier(config, "warm")
    with connect(config.warehouse) as con:
        ensure_raw_schema(con)
        candidates = {t.name: _days_before(con, t, hot_before) for t in RAW_TABLES}
    # Whatever the hourly export has not written yet is written now (idempotent).
    export_to_lake(config, days={t: [d for d, _ in days] for t, days in candidates.items()})
    with connect(config.warehouse) as con:
        warm.register(con)
        for table in RAW_TABLES:
            for day, rows in candidates[table.name]:
                problem = _verify_in_lake(con, warm, table, day, rows)
                if problem is not None:
                    result.kept_hot[f"{table.name}/{day}"] = problem
                    logger.warning("retention keeps %s/%s hot: %s", table.name, day, problem)
                    continue
                _evict(con, warm, table, day)
                result.evicted.setdefault(table.name, []).append(day)
                result.rows_evicted += rows
    result.moved_cold = age_to_cold(config, today - timedelta(days=config.lake.warm_days))
    result.seconds = time.perf_counter() - started
    logger.info(
        "retention: %d rows in %d partitions left the warehouse, %d kept, %d moved cold (%.2fs)",
        result.rows_evicted,
        sum(len(v) for v in result.evicted.values()),
        len(result.kept_hot),
        len(result.moved_cold),
        result.seconds,
    )
    return result


def _days_before(
    con: duckdb.DuckDBPyConnection, table: RawTable, before: date
) -> list[tuple[str, int]]:
    rows = con.execute(
        f"""select strftime(occurred_at, '%Y-%m-%d') as day, count(*)
            from {table.qualified} where occurred_at < ? group by day order by day""",
        [before],
    ).fetchall()
    return [(str(d), int(n)) for d, n in rows]


def _verify_in_lake(
    con: duckdb.DuckDBPyConnection, storage: LakeStorage, table: RawTable, day: str, rows: int
) -> str | None:
    """None when the lake holds every warehouse row of the partition, else why not."""
    manifest = read_manifest(storage, table.name, day)
    if manifest is None or not manifest.files:
        return "not in the lake"
    problems = verify_files(storage, manifest)
    if problems:
        return problems[0]
    files = ", ".join(sql_literal(storage.duckdb_path(k)) for k in manifest.file_keys())
    where, params = date_predicate(day)
    lake_rows = con.execute(f"select count(*) from read_parquet([{files}])").fetchall()[0][0]
    if lake_rows != manifest.rows:
        return f"lake files hold {lake_rows} rows, manifest says {manifest.rows}"
    expected, found = con.execute(
        f"""with w as (
                select _dedupe_key from {table.qualified} where {where}
            ), l as (
                select distinct _dedupe_key from read_parquet([{files}])
            )
            select
                (select (count(*), coalesce(sum(hash(_dedupe_key))::hugeint, 0)) from w),
                (select (count(*), coalesce(sum(hash(w._dedupe_key))::hugeint, 0))
                 from w semi join l on w._dedupe_key = l._dedupe_key)""",
        params,
    ).fetchall()[0]
    if expected != found:
        return f"lake has {found[0]} of the warehouse's {expected[0]} rows (or checksums differ)"
    if int(expected[0]) != rows:
        return "the partition changed while it was checked"
    return None


def _evict(con: duckdb.DuckDBPyConnection, storage: LakeStorage, table: RawTable, day: str) -> None:
    """Mark the lake's partition as the only copy, then delete it from the warehouse."""
    manifest = read_manifest(storage, table.name, day)
    assert manifest is not None  # verified just before
    if not manifest.evicted:
        manifest.evicted = True
        write_manifest(storage, manifest)
    where, params = date_predicate(day)
    con.execute(f"delete from {table.qualified} where {where}", params)


def age_to_cold(config: LakeConfig, before: date) -> list[str]:
    """Move warm partitions dated before ``before`` to the cold tier, verified."""
    warm = open_tier(config, "warm")
    cold = open_tier(config, "cold")
    moved = []
    for manifest in list_partitions(warm):
        if manifest.date == NULL_DATE or date.fromisoformat(manifest.date) >= before:
            continue
        _copy_partition(warm, cold, manifest)
        warm.delete([*manifest.file_keys(), f"{manifest.prefix}/_manifest.json"])
        moved.append(manifest.prefix)
    return moved


def _copy_partition(source: LakeStorage, target: LakeStorage, manifest: PartitionManifest) -> None:
    from shopsentry.errors import TransientError

    problems = verify_files(source, manifest)
    if problems:
        raise TransientError(f"cannot age {manifest.prefix} to cold: {problems[0]}")
    for key in manifest.file_keys():
        target.put_bytes(key, source.get_bytes(key))
    problems = verify_files(target, manifest)
    if problems:
        raise TransientError(f"copy of {manifest.prefix} to cold failed: {problems[0]}")
    write_manifest(target, manifest)
