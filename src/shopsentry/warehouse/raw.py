"""The warehouse's RAW layer: one table per topic, and the loader's offsets table.

What the tables are (their names, the topic each mirrors, how a row is keyed and timed)
and how to create and read them. How records get into them is
:mod:`shopsentry.warehouse.loader` (the log) and :mod:`shopsentry.warehouse.history`
(history files); the lake export, retention and backups read the same definitions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from shopsentry.bus.base import TopicPartition

if TYPE_CHECKING:
    import duckdb

logger = logging.getLogger(__name__)

RAW_SCHEMA = "raw"
OFFSETS_TABLE = f"{RAW_SCHEMA}._load_offsets"


@dataclass(frozen=True, slots=True)
class RawTable:
    """One RAW table: the topic it mirrors and how its rows are keyed and timed."""

    name: str
    topic_attr: str  # attribute of settings.topics
    dedupe_key: str  # SQL over the parsed fields naming one logical record
    occurred_at: str  # parsed field holding the event time (ISO text)

    @property
    def qualified(self) -> str:
        return f"{RAW_SCHEMA}.{self.name}"


RAW_TABLES: tuple[RawTable, ...] = (
    RawTable("purchase_events", "purchase_events", "event_id", "occurred_text"),
    RawTable("user_behavior", "user_behavior", "event_id", "occurred_text"),
    # Alerts and decisions carry the purchase's event_id: one of each per purchase.
    RawTable("fraud_alerts", "fraud_alerts", "event_id", "occurred_text"),
    RawTable("decisions", "decisions", "event_id", "occurred_text"),
    # A purchase may be labelled by a chargeback and, separately, by a review.
    RawTable("fraud_labels", "labels", "event_id || '|' || label_source", "occurred_text"),
    # An analyst may revise a verdict; each review is kept, staging keeps the latest.
    RawTable("reviews", "reviews", "alert_id || '|' || reviewed_at", "reviewed_at"),
)
RAW_BY_NAME = {t.name: t for t in RAW_TABLES}

_RAW_COLUMNS = """
    _dedupe_key varchar not null,
    event_id varchar,
    event_type varchar,
    user_id varchar,
    source varchar,
    occurred_at timestamp,
    raw_json json,
    raw_text varchar,
    _topic varchar not null,
    _partition integer not null,
    _offset bigint not null,
    _loaded_at timestamp not null
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the RAW schema and tables if missing; dbt's sources point at them."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for table in RAW_TABLES:
        con.execute(f"create table if not exists {table.qualified} ({_RAW_COLUMNS})")
    con.execute(
        f"""create table if not exists {OFFSETS_TABLE} (
            consumer_group varchar not null,
            topic varchar not null,
            partition integer not null,
            next_offset bigint not null,
            updated_at timestamp not null,
            primary key (consumer_group, topic, partition)
        )"""
    )


def recorded_offsets(con: duckdb.DuckDBPyConnection, group: str) -> dict[TopicPartition, int]:
    """The next offset to read per partition, as the last committed load left it."""
    rows = con.execute(
        f"select topic, partition, next_offset from {OFFSETS_TABLE} where consumer_group = ?",
        [group],
    ).fetchall()
    return {TopicPartition(t, int(p)): int(o) for t, p, o in rows}


def record_offsets(
    con: duckdb.DuckDBPyConnection, group: str, offsets: dict[TopicPartition, int]
) -> None:
    """Write the offsets a load reached, in the caller's transaction (with its rows)."""
    if not offsets:
        return
    table = pa.table(
        {
            "consumer_group": [group] * len(offsets),
            "topic": [tp.topic for tp in offsets],
            "partition": pa.array([tp.partition for tp in offsets], pa.int32()),
            "next_offset": pa.array(list(offsets.values()), pa.int64()),
        }
    )
    con.register("_offsets_arrow", table)
    try:
        con.execute(
            f"""insert or replace into {OFFSETS_TABLE}
                select consumer_group, topic, partition, next_offset, current_timestamp::timestamp
                from _offsets_arrow"""
        )
    finally:
        con.unregister("_offsets_arrow")


def raw_counts(
    con: duckdb.DuckDBPyConnection, tables: Iterable[RawTable] = RAW_TABLES
) -> dict[str, int]:
    """Rows per RAW table (for progress lines and tests)."""
    counts = {}
    for t in tables:
        rows = con.execute(f"select count(*) from {t.qualified}").fetchall()
        counts[t.name] = int(rows[0][0])
    return counts
