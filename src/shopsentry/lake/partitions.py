"""The lake's layout: one Hive partition per (RAW table, event date), each with a manifest.

    <tier>/<table>/date=<YYYY-MM-DD>/data-<checksum>.parquet
    <tier>/<table>/date=<YYYY-MM-DD>/_manifest.json

The table is the event's kind (purchases, behaviour, alerts, decisions, labels, reviews:
one RAW table per topic); the date is the event time's UTC day, or
``__HIVE_DEFAULT_PARTITION__`` for a record whose time could not be parsed (the
quarantine). DuckDB reads the tree directly with ``hive_partitioning``.

A partition's manifest is its truth: the files it lists, with rows and SHA-256, and a
checksum of the rows' keys. A data file's name comes from that key checksum, so the same
rows always land in the same file, and a file not in the manifest is garbage from a run
that died between writing and publishing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from shopsentry.lake.storage import LakeStorage

NULL_DATE = "__HIVE_DEFAULT_PARTITION__"
MANIFEST = "_manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DataFile:
    name: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class PartitionManifest:
    """What one partition holds and where it is in its life."""

    table: str
    date: str
    rows: int
    key_checksum: str  # sum of DuckDB hash(_dedupe_key), as text (a HUGEINT)
    files: list[DataFile] = field(default_factory=list)
    written_at: str = ""
    # Set once retention removed the partition from the warehouse: later exports then
    # merge new rows into the lake's copy instead of replacing it.
    evicted: bool = False
    version: int = FORMAT_VERSION

    @property
    def prefix(self) -> str:
        return partition_prefix(self.table, self.date)

    def file_keys(self) -> list[str]:
        return [f"{self.prefix}/{f.name}" for f in self.files]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PartitionManifest:
        raw: dict[str, Any] = json.loads(data)
        raw["files"] = [DataFile(**f) for f in raw.get("files", [])]
        return cls(**raw)


def partition_prefix(table: str, date: str) -> str:
    return f"{table}/date={date}"


def read_manifest(storage: LakeStorage, table: str, date: str) -> PartitionManifest | None:
    key = f"{partition_prefix(table, date)}/{MANIFEST}"
    if not storage.exists(key):
        return None
    return PartitionManifest.from_json(storage.get_bytes(key))


def write_manifest(storage: LakeStorage, manifest: PartitionManifest) -> None:
    storage.put_bytes(f"{manifest.prefix}/{MANIFEST}", manifest.to_json())


def list_partitions(storage: LakeStorage, table: str | None = None) -> list[PartitionManifest]:
    """Every published partition of a tier (of one table, or all), oldest date first."""
    found = []
    for key in storage.list(table or ""):
        if key.endswith(f"/{MANIFEST}"):
            found.append(PartitionManifest.from_json(storage.get_bytes(key)))
    return sorted(found, key=lambda m: (m.date, m.table))


def verify_files(storage: LakeStorage, manifest: PartitionManifest) -> list[str]:
    """Problems with a partition's files (missing, wrong size, wrong checksum)."""
    problems = []
    for data_file, key in zip(manifest.files, manifest.file_keys(), strict=True):
        if not storage.exists(key):
            problems.append(f"{key} is missing")
        elif storage.size(key) != data_file.bytes:
            problems.append(f"{key} has {storage.size(key)} bytes, manifest says {data_file.bytes}")
        elif storage.sha256(key) != data_file.sha256:
            problems.append(f"{key} does not match its SHA-256")
    return problems
