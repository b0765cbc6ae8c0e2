"""Rows of a CSV, Parquet or JSON-lines file, in batches of dicts, with the file's
columns and (when cheap to know) its row count: what `history import` reads."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from shopsentry.errors import TerminalError

BATCH_ROWS = 50_000
Rows = tuple[list[str], int | None, Iterator[list[Any]]]


def read_rows(path: Path, error: type[TerminalError] = TerminalError) -> Rows:
    """The file's columns, its row count if known, and its rows in batches (each row a
    dict, or the undecodable line itself as bytes); a file that cannot be read raises
    ``error``."""
    if not path.is_file():
        raise error(f"no file at {path}", hint="pass a CSV, Parquet or JSONL file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several unrelated types for bad files
            raise error(f"cannot read {path}: {exc}") from None
        batches = (b.to_pylist() for b in parquet.iter_batches(batch_size=BATCH_ROWS))
        return parquet.schema_arrow.names, parquet.metadata.num_rows, batches
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl_rows(path)
    if suffix in (".csv", ".txt"):
        return _csv_rows(path)
    raise error(f"unknown file type {path.suffix!r}", hint="use .csv, .parquet or .jsonl")


def _csv_rows(path: Path) -> Rows:
    fh = path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    header = list(reader.fieldnames or [])

    def batches() -> Iterator[list[Any]]:
        with fh:
            batch: list[Any] = []
            for row in reader:
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    yield batch
                    batch = []
            if batch:
                yield batch

    with path.open("rb") as raw:  # for the progress bar only: a quoted newline may skew it
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: raw.read(1 << 20), b""))
    return header, max(lines - 1, 0), batches()


def _jsonl_rows(path: Path) -> Rows:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    rows: list[Any] = []
    columns: dict[str, None] = {}
    for line in lines:
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            columns.update(dict.fromkeys(row))
            rows.append(row)
        else:
            rows.append(line)  # rejected when its turn comes
    batches = (rows[i : i + BATCH_ROWS] for i in range(0, len(rows), BATCH_ROWS))
    return list(columns), len(rows), batches
