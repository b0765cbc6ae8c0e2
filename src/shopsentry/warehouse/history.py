"""Backfills: load Parquet / JSONL history files into the RAW layer.

The same insert path as the log loader (one Arrow batch per file, anti-join on the
dedupe key), with records routed to their RAW table by ``event_type`` instead of by
topic. Accepts the canonical events table (``raw_json`` column, as the simulator writes
it), the labels table (the Label event's JSON is rebuilt from its columns), or JSON
lines of encoded events. Loading the same files twice inserts nothing the second time.
"""

from __future__ import annotations

import gzip
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from shopsentry.errors import TerminalError
from shopsentry.warehouse.db import connect
from shopsentry.warehouse.loader import (
    INCOMING_SCHEMA,
    LoadResult,
    ProgressCallback,
    ensure_raw_schema,
    insert_incoming,
    query_arrow,
    texts_array,
)

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)


class HistoryError(TerminalError):
    """A history file cannot be loaded (unknown format or missing columns)."""


def _history_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise HistoryError(
            f"history path {path} does not exist", hint="pass a directory of .parquet/.jsonl files"
        )
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and (p.suffix in {".parquet", ".jsonl", ".ndjson"} or p.name.endswith(".jsonl.gz"))
    )
    if not files:
        raise HistoryError(
            f"no .parquet or .jsonl files under {path}",
            hint="write them with `shopsentry simulate --out DIR`",
        )
    return files


def _history_table(con: duckdb.DuckDBPyConnection, file: Path) -> pa.Table:
    """One history file as the loader's incoming shape (topic, partition, offset, text)."""
    origin = f"history:{file.name}"
    if file.suffix == ".parquet":
        columns = {
            row[0]
            for row in con.execute("describe select * from read_parquet(?)", [str(file)]).fetchall()
        }
        if "raw_json" in columns:
            text_sql = "raw_json::varchar"
        elif {"event_id", "is_fraud", "known_at"} <= columns:
            # A labels table (the simulator's ground truth): rebuild the Label event's JSON.
            scenario = "scenario" if "scenario" in columns else "null"
            label_source = "label_source" if "label_source" in columns else "'simulator'"
            source = "source" if "source" in columns else "null"
            text_sql = f"""to_json(struct_pack(
                schema_version := 1, event_type := 'label', event_id := event_id,
                source := {source}, user_id := user_id,
                occurred_at := strftime(occurred_at::timestamp, '%Y-%m-%dT%H:%M:%S.%f') || '+00:00',
                order_id := order_id, is_fraud := is_fraud, scenario := {scenario},
                label_source := {label_source},
                known_at := strftime(known_at::timestamp, '%Y-%m-%dT%H:%M:%S.%f') || '+00:00'
            ))::varchar"""
        else:
            raise HistoryError(
                f"{file} has neither a raw_json column nor the labels columns",
                hint="history Parquet must be the canonical events or labels table",
            )
        return query_arrow(
            con,
            f"""select ?::varchar as _topic, 0::integer as _partition,
                       (row_number() over () - 1)::bigint as _offset, {text_sql} as _text
                from read_parquet(?)""",
            [origin, str(file)],
        )
    data = gzip.decompress(file.read_bytes()) if file.name.endswith(".gz") else file.read_bytes()
    lines = [line for line in data.splitlines() if line.strip()]
    return pa.Table.from_arrays(
        [
            pa.array([origin] * len(lines), pa.string()),
            pa.array(np.zeros(len(lines), dtype=np.int32)),
            pa.array(np.arange(len(lines), dtype=np.int64)),
            texts_array(lines),
        ],
        schema=INCOMING_SCHEMA,
    )


def load_history(
    warehouse: Path, path: Path, *, progress: ProgressCallback | None = None
) -> LoadResult:
    """Load Parquet / JSONL history (a backfill) into RAW of the warehouse file
    ``warehouse``, routed by each event's type.

    Accepts the canonical events table (``raw_json`` column), the labels table, or JSON
    lines of encoded events. Loading the same files twice inserts nothing the second time.
    """
    started = time.perf_counter()
    files = _history_files(path)
    result = LoadResult()
    with connect(warehouse) as con:
        ensure_raw_schema(con)
        for i, file in enumerate(files):
            incoming = _history_table(con, file)
            con.execute("begin transaction")
            try:
                inserted = insert_incoming(con, incoming, None)
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
            result.records_read += incoming.num_rows
            result.add(inserted)
            logger.info(
                "history %s: %d records, %s inserted", file.name, incoming.num_rows, inserted
            )
            if progress:
                progress(i + 1, len(files))
    result.seconds = time.perf_counter() - started
    return result
