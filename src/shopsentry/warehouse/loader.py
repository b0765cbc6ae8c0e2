"""Load the event log into the RAW layer (its tables: :mod:`.raw`; history files: :mod:`.history`).

The RAW layer is the design's landing zone: one table per topic, every record kept with its
full JSON (``raw_json``, DuckDB's JSON type standing in for Snowflake's VARIANT), nothing
cleaned or dropped. Records that are not even JSON are kept too (``raw_json`` null,
``raw_text`` holding what arrived) so the staging layer can quarantine them with a reason.

Guarantees, and how they are kept:

* **Idempotent on the event.** Rows are inserted with an anti-join on ``_dedupe_key``
  (the event id, or the topic/partition/offset of a record without one), so a redelivered
  record, a retried job or a history file loaded twice adds nothing.
* **Offsets recorded with the data.** The offsets reached are written to
  ``raw._load_offsets`` in the *same* DuckDB transaction as the rows; only after that
  transaction commits is the consumer group's offset committed to the log. DuckDB is the
  source of truth (the stream runtime's sink, :class:`WarehouseSink`): on assignment the
  runtime seeks every partition to the offset DuckDB recorded, so a crash between the two
  commits re-reads a little and the anti-join absorbs it, and a fresh warehouse re-reads
  the log from its start.
* **Bulk paths only.** Polled records become one Arrow table per transaction; DuckDB
  parses the JSON and inserts set-wise. There is no per-row INSERT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from shopsentry.bus.base import EventLog, Record, TopicPartition
from shopsentry.stream.base import check_fence
from shopsentry.stream.runtime import RuntimeConfig, StreamRuntime
from shopsentry.warehouse.db import connect
from shopsentry.warehouse.log_sink import (
    ASSIGNMENT_TIMEOUT_S,
    LoaderHandler,
    LoaderNotAssigned,
    ProgressCallback,
    ProgressObserver,
    WarehouseSink,
)
from shopsentry.warehouse.raw import (
    OFFSETS_TABLE,
    RAW_BY_NAME,
    RAW_SCHEMA,
    RAW_TABLES,
    RawTable,
    ensure_raw_schema,
    raw_counts,
    record_offsets,
    recorded_offsets,
)

if TYPE_CHECKING:
    import duckdb

    from shopsentry.bus import BusConfig
    from shopsentry.config import Settings

# The RAW layer's definitions live in :mod:`.raw`; re-exported here, where the lake,
# backup and pipeline code and the tests first found them.
__all__ = [
    "ASSIGNMENT_TIMEOUT_S",
    "INCOMING_SCHEMA",
    "OFFSETS_TABLE",
    "RAW_BY_NAME",
    "RAW_SCHEMA",
    "RAW_TABLES",
    "LoadResult",
    "LoaderConfig",
    "LoaderNotAssigned",
    "ProgressCallback",
    "RawTable",
    "ensure_raw_schema",
    "insert_incoming",
    "load_from_log",
    "load_records",
    "query_arrow",
    "raw_counts",
    "recorded_offsets",
    "texts_array",
]

logger = logging.getLogger(__name__)

# Where a history record goes, by its event_type.
_TABLE_FOR_TYPE = {
    "purchase": "purchase_events",
    "decision": "decisions",
    "fraud_alert": "fraud_alerts",
    "label": "fraud_labels",
    "review": "reviews",
}

# The envelope fields every RAW table keys, times or routes on, parsed once per record.
_ENVELOPE = (
    '{"event_id": "VARCHAR", "event_type": "VARCHAR", "user_id": "VARCHAR", "source": "VARCHAR", '
    '"occurred_at": "VARCHAR", "label_source": "VARCHAR", "alert_id": "VARCHAR", '
    '"reviewed_at": "VARCHAR"}'
)

INCOMING_SCHEMA = pa.schema(
    [
        ("_topic", pa.string()),
        ("_partition", pa.int32()),
        ("_offset", pa.int64()),
        ("_text", pa.large_string()),
    ]
)


@dataclass
class LoadResult:
    """What one load did: rows inserted per RAW table and records read in total."""

    records_read: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows_inserted(self) -> int:
        return sum(self.inserted.values())

    @property
    def duplicates_skipped(self) -> int:
        return self.records_read - self.rows_inserted

    def add(self, inserted: dict[str, int]) -> None:
        for name, n in inserted.items():
            self.inserted[name] = self.inserted.get(name, 0) + n


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pa.Table:
    """A query's result as an Arrow table, across DuckDB versions (2.x renamed the call)."""
    relation = con.sql(sql, params=params)
    method = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    table: pa.Table = method()
    return table


def texts_array(values: Sequence[bytes]) -> pa.Array:
    """Record values as one Arrow string array, built from a single joined buffer.

    ``pa.array(list_of_bytes)`` costs a Python call per value; joining the bytes and
    computing offsets with NumPy is several times faster for a million records. A
    payload that is not UTF-8 fails validation and falls back to a per-value decode
    with replacement characters, so staging can quarantine it instead of the load
    failing.
    """
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    array = pa.Array.from_buffers(
        pa.large_string(),
        len(values),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))],
    )
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return pa.array([v.decode("utf-8", "replace") for v in values], type=pa.large_string())
    return array


def insert_incoming(
    con: duckdb.DuckDBPyConnection,
    incoming: pa.Table,
    table_for_topic: dict[str, str] | None,
) -> dict[str, int]:
    """Parse and insert one Arrow batch of raw records; returns rows inserted per table.

    ``table_for_topic`` routes records by topic (the log); ``None`` routes by the JSON's
    ``event_type`` (history files mixing purchases and behaviour events). A history line
    that is not JSON has no type and lands in ``purchase_events``, where staging
    quarantines it with the reason.
    """
    if table_for_topic is not None:
        mapping = table_for_topic
        route = "_topic"
    else:
        mapping = _TABLE_FOR_TYPE
        route = "f.event_type"
    whens = " ".join("when ? then ?" for _ in mapping)
    route_params: list[str] = [x for pair in mapping.items() for x in pair]
    default = (
        "null"
        if table_for_topic is not None
        else "case when f.event_type is null then 'purchase_events' else 'user_behavior' end"
    )
    con.register("_incoming_arrow", incoming)
    try:
        con.execute(
            f"""
            create or replace temp table _incoming as
            with typed as (
                -- One parse to validate, one to pull out the envelope fields (DuckDB
                -- would parse again for every ->> otherwise).
                select _topic, _partition, _offset, try_cast(_text as json) as j, _text
                from _incoming_arrow
            ),
            fields as (
                select *, json_transform(j, '{_ENVELOPE}') as f
                from typed
            )
            select
                _topic,
                _partition,
                _offset,
                j,
                case when j is null then _text end as raw_text,
                f.event_id,
                f.event_type,
                f.user_id,
                f.source,
                f.occurred_at as occurred_text,
                f.label_source,
                f.alert_id,
                f.reviewed_at,
                case {route} {whens} else {default} end as _table
            from fields
            """,
            route_params,
        )
        return _insert_new(con)
    finally:
        con.unregister("_incoming_arrow")


def _insert_new(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Insert what ``_incoming`` holds into each RAW table, first sighting of each key
    only and none already there (the anti-join); rows inserted per table."""
    inserted: dict[str, int] = {}
    for table in RAW_TABLES:
        rows = con.execute(
            f"""
            insert into {table.qualified}
            with candidates as (
                select
                    coalesce(
                        {table.dedupe_key},
                        concat_ws(':', 'bad', _topic, _partition, _offset)
                    ) as _dedupe_key,
                    event_id,
                    event_type,
                    user_id,
                    source,
                    try_cast({table.occurred_at} as timestamptz)::timestamp as occurred_at,
                    j as raw_json,
                    raw_text,
                    _topic,
                    _partition,
                    _offset
                from _incoming
                where _table = ?
            ),
            first_seen as (
                select *
                from candidates
                qualify row_number() over (
                    partition by _dedupe_key order by _topic, _partition, _offset
                ) = 1
            )
            select
                f._dedupe_key, f.event_id, f.event_type, f.user_id, f.source, f.occurred_at,
                f.raw_json, f.raw_text, f._topic, f._partition, f._offset,
                current_timestamp::timestamp as _loaded_at
            from first_seen as f
            anti join {table.qualified} as t on t._dedupe_key = f._dedupe_key
            """,
            [table.name],
        ).fetchall()
        count = int(rows[0][0]) if rows else 0
        if count:
            inserted[table.name] = count
    return inserted


def _fence(
    con: duckdb.DuckDBPyConnection, group: str, expected: Mapping[TopicPartition, int]
) -> None:
    check_fence(recorded_offsets(con, group), expected, f"{OFFSETS_TABLE} of {group}")


def load_records(
    con: duckdb.DuckDBPyConnection,
    records: Sequence[Record],
    table_for_topic: dict[str, str],
    *,
    group: str | None = None,
    offsets: dict[TopicPartition, int] | None = None,
    expected: Mapping[TopicPartition, int] | None = None,
) -> dict[str, int]:
    """Insert polled records, and the offsets they reach, in one DuckDB transaction;
    with ``expected`` (the offsets this load started from) refuse, writing nothing, if
    another load went further meanwhile (:class:`~shopsentry.errors.StateFenced`)."""
    topics = sorted({r.topic for r in records})
    index = {t: i for i, t in enumerate(topics)}
    n = len(records)
    topic_column = pa.DictionaryArray.from_arrays(
        pa.array(np.fromiter((index[r.topic] for r in records), dtype=np.int32, count=n)),
        pa.array(topics, pa.string()),
    ).cast(pa.string())
    incoming = pa.Table.from_arrays(
        [
            topic_column,
            pa.array(np.fromiter((r.partition for r in records), dtype=np.int32, count=n)),
            pa.array(np.fromiter((r.offset for r in records), dtype=np.int64, count=n)),
            texts_array([r.value for r in records]),
        ],
        schema=INCOMING_SCHEMA,
    )
    con.execute("begin transaction")
    try:
        if group is not None and expected:
            _fence(con, group, expected)
        inserted = insert_incoming(con, incoming, table_for_topic) if records else {}
        if group is not None and offsets:
            record_offsets(con, group, offsets)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return inserted


@dataclass(frozen=True, slots=True)
class LoaderConfig:
    """What the loader needs: the bus (and its RAW topics), the warehouse file, and the
    loader's consumer group."""

    bus: BusConfig
    warehouse: Path
    group_id: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LoaderConfig:
        from shopsentry.bus import BusConfig

        bus = BusConfig.from_settings(settings)
        return cls(bus, settings.warehouse_path, settings.warehouse.loader_group_id)


def load_from_log(
    config: LoaderConfig,
    *,
    batch_records: int = 200_000,
    poll_records: int = 50_000,
    poll_timeout: float = 0.5,
    idle_timeout_s: float = 10.0,
    progress: ProgressCallback | None = None,
) -> LoadResult:
    """Drain every RAW topic up to its end offset (as of the start) into the warehouse.

    Runs as its own consumer group (``warehouse.loader_group_id``), so it never
    disturbs the detector's offsets. Returns once every partition is caught up, or after
    ``idle_timeout_s`` without a record (a partition whose tail was deleted by retention
    would otherwise be waited on forever; Kafka may take seconds to fetch after a seek).
    """
    from shopsentry.bus import open_log

    started = time.perf_counter()
    group = config.group_id
    table_for_topic = {getattr(config.bus.topics, t.topic_attr).name: t.name for t in RAW_TABLES}
    result = LoadResult()
    log = open_log(config.bus)
    try:
        ends, starts = _bounds(log, table_for_topic)
        with connect(config.warehouse) as con:
            ensure_raw_schema(con)
            recorded = recorded_offsets(con, group)
            position = {tp: max(recorded.get(tp, 0), start) for tp, start in starts.items()}
            expected = sum(max(0, end - position[tp]) for tp, end in ends.items())
            if progress:
                progress(0, expected)
            if expected == 0:
                logger.info("warehouse loader: nothing new on %d partitions", len(ends))
            else:
                handler = LoaderHandler(group, ends, position, idle_timeout_s=idle_timeout_s)
                sink = WarehouseSink(con, group, table_for_topic, position, result, load_records)
                runtime = RuntimeConfig(
                    group_id=group,
                    topics=tuple(table_for_topic),
                    client_id="warehouse-loader",
                    batch_max_records=batch_records,
                    batch_max_wait_ms=int(poll_timeout * 1000),
                    idle_poll_s=poll_timeout,
                    produces=False,
                )
                observers = [ProgressObserver(result, expected, progress)] if progress else []
                StreamRuntime(
                    log, runtime, handler, sink, observers=observers, until=handler.caught_up
                ).run()
    finally:
        log.close()
    result.offsets = dict(position)
    result.seconds = time.perf_counter() - started
    logger.info(
        "warehouse loader: read %d records, inserted %d rows (%s) in %.2fs",
        result.records_read,
        result.rows_inserted,
        result.inserted,
        result.seconds,
    )
    return result


def _bounds(
    log: EventLog, topics: Iterable[str]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Every partition's end offset and its first offset still kept."""
    ends: dict[TopicPartition, int] = {}
    starts: dict[TopicPartition, int] = {}
    for topic in topics:
        for p in log.describe_topic(topic).partitions:
            ends[TopicPartition(topic, p.partition)] = p.end_offset
            starts[TopicPartition(topic, p.partition)] = p.start_offset
    return ends, starts
