"""Write what the warehouse loaded to the lake's warm tier, idempotently.

The hourly ETL calls :func:`export_to_lake` after its load. Which partitions to write is
found from ``_loaded_at``: every (table, date) that received a row since the last
export's high-water mark (kept in ``raw._lake_watermark``, minus a small rescan margin
for a load transaction that committed late). Each such partition is rewritten *whole*
from the warehouse: its rows are the warehouse's rows for that day, so a retried hour, a
repeated hour or a replay after a restore produces the same rows, the same key checksum,
the same file name, and is skipped as unchanged. Nothing is ever appended, so nothing is
ever duplicated.

A partition that retention already removed from the warehouse (its manifest says
``evicted``) is the one exception: a late row for that day is merged into the lake's
copy (rows whose key the lake already has are dropped).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.lake.partitions import (
    NULL_DATE,
    DataFile,
    PartitionManifest,
    read_manifest,
    write_manifest,
)
from shopsentry.lake.storage import LakeStorage, open_tier, sha256_file
from shopsentry.warehouse.loader import RAW_SCHEMA, RAW_TABLES, RawTable, ensure_raw_schema

if TYPE_CHECKING:
    import duckdb

    from shopsentry.lake.storage import LakeConfig

logger = logging.getLogger(__name__)

WATERMARK_TABLE = f"{RAW_SCHEMA}._lake_watermark"
# Rows loaded this long before the last mark are looked at again (idempotent either way).
RESCAN = timedelta(minutes=10)
COLUMNS = (
    "_dedupe_key, event_id, event_type, user_id, source, occurred_at, raw_json, raw_text, "
    "_topic, _partition, _offset, _loaded_at"
)
DATE_SQL = f"coalesce(strftime(occurred_at, '%Y-%m-%d'), '{NULL_DATE}')"


@dataclass
class ExportResult:
    """What one export wrote: partitions rewritten, left alone, rows in the files written."""

    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    rows_written: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "partitions_written": len(self.written),
            "partitions_unchanged": self.unchanged,
            "rows_written": self.rows_written,
            "seconds": round(self.seconds, 3),
        }


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def date_predicate(day: str) -> tuple[str, list[Any]]:
    """A ``where`` clause selecting one partition's rows (ranges use DuckDB's zone maps)."""
    if day == NULL_DATE:
        return "occurred_at is null", []
    start = date.fromisoformat(day)
    return "occurred_at >= ? and occurred_at < ?", [start, start + timedelta(days=1)]


def ensure_watermark(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""create table if not exists {WATERMARK_TABLE} (
            table_name varchar primary key, loaded_until timestamp not null
        )"""
    )


def export_to_lake(config: LakeConfig, *, days: dict[str, list[str]] | None = None) -> ExportResult:
    """Write every partition touched since the last export (or exactly ``days``: table →
    dates, as retention asks for) to the warm tier."""
    from shopsentry.warehouse.db import connect

    started = time.perf_counter()
    storage = open_tier(config, "warm")
    staging = config.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    result = ExportResult()
    with connect(config.warehouse) as con:
        ensure_raw_schema(con)
        ensure_watermark(con)
        storage.register(con)
        writer = _PartitionWriter(con, storage, staging, config.lake.compression, result)
        for table in RAW_TABLES:
            if days is None:
                _export_touched(con, writer, table)
            else:
                for day in days.get(table.name, []):
                    writer.write(table, day)
    result.seconds = time.perf_counter() - started
    logger.info(
        "lake export: %d partitions written (%d rows), %d unchanged in %.2fs",
        len(result.written),
        result.rows_written,
        result.unchanged,
        result.seconds,
    )
    return result


def _export_touched(
    con: duckdb.DuckDBPyConnection, writer: _PartitionWriter, table: RawTable
) -> None:
    mark = con.execute(
        f"select loaded_until from {WATERMARK_TABLE} where table_name = ?", [table.name]
    ).fetchall()
    until = con.execute(f"select max(_loaded_at) from {table.qualified}").fetchall()[0][0]
    if until is None:
        return
    if mark:
        rows = con.execute(
            f"select distinct {DATE_SQL} from {table.qualified} where _loaded_at >= ?",
            [mark[0][0] - RESCAN],
        ).fetchall()
    else:
        rows = con.execute(f"select distinct {DATE_SQL} from {table.qualified}").fetchall()
    for (day,) in sorted(rows):
        writer.write(table, day)
    con.execute(f"insert or replace into {WATERMARK_TABLE} values (?, ?)", [table.name, until])


@dataclass
class _PartitionWriter:
    con: duckdb.DuckDBPyConnection
    storage: LakeStorage
    staging: Path
    compression: str
    result: ExportResult

    def write(self, table: RawTable, day: str) -> None:
        """Rewrite one partition from the warehouse (merged with the lake's copy if the
        warehouse no longer holds the day), unless the lake already has exactly it."""
        existing = read_manifest(self.storage, table.name, day)
        where, params = date_predicate(day)
        source = f"(select {COLUMNS} from {table.qualified} where {where})"
        if existing is not None and existing.evicted and existing.files:
            # The warehouse no longer holds the day: merge into the lake's copy.
            files = ", ".join(
                sql_literal(self.storage.duckdb_path(k)) for k in existing.file_keys()
            )
            self.con.execute(
                f"""create or replace temp table _lake_part as
                    select * from {source}
                    union all
                    select {COLUMNS} from read_parquet([{files}]) as l
                    where l._dedupe_key not in (select _dedupe_key from {source})""",
                params + params,
            )
            source, params = "_lake_part", []
        # Only the key column is read here (columnar): cheap next to writing the rows.
        rows, checksum = self.con.execute(
            f"select count(*), coalesce(sum(hash(_dedupe_key))::hugeint, 0) from {source}",
            params,
        ).fetchall()[0]
        key_checksum = str(checksum)
        same = existing is not None and (existing.rows, existing.key_checksum) == (
            rows,
            key_checksum,
        )
        if same and all(self.storage.exists(k) for k in existing.file_keys()):  # type: ignore[union-attr]
            self.result.unchanged += 1
            return
        manifest = PartitionManifest(
            table=table.name,
            date=day,
            rows=int(rows),
            key_checksum=key_checksum,
            written_at=_now_iso(),
            evicted=existing.evicted if existing is not None else False,
        )
        if rows:
            name = "data-" + hashlib.sha256(f"{rows}:{key_checksum}".encode()).hexdigest()[:16]
            manifest.files.append(self._write_file(manifest, f"{name}.parquet", source, params))
        write_manifest(self.storage, manifest)
        if existing is not None:
            stale = set(existing.file_keys()) - set(manifest.file_keys())
            self.storage.delete(sorted(stale))
        self.result.written.append(manifest.prefix)
        self.result.rows_written += int(rows)

    def _write_file(
        self, manifest: PartitionManifest, name: str, source: str, params: list[Any]
    ) -> DataFile:
        tmp = self.staging / f"{manifest.table}-{manifest.date}-{name}"
        codec = "uncompressed" if self.compression == "none" else self.compression
        self.con.execute(
            f"copy {source} to {sql_literal(str(tmp))} (format parquet, compression {codec})",
            params,
        )
        try:
            data_file = DataFile(
                name=name, rows=manifest.rows, bytes=tmp.stat().st_size, sha256=sha256_file(tmp)
            )
            self.storage.put_file(tmp, f"{manifest.prefix}/{name}")
        finally:
            tmp.unlink(missing_ok=True)
        return data_file


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
