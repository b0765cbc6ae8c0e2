"""Where simulated traffic goes: files (the canonical events table and the labels table,
JSONL or Parquet) or the event log (purchases → purchase-events, behaviour →
user-behavior, labels → fraud-labels, all keyed by user id).

JSONL files hold one encoded event per line (the ``raw_json`` column; the other columns
of the events table are fields of it); Parquet files hold the table itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shopsentry.errors import ConfigError
from shopsentry.events.codec import encode
from shopsentry.events.schema import Label
from shopsentry.simulator.config import US
from shopsentry.simulator.core import Simulator

if TYPE_CHECKING:
    import pyarrow as pa

    from shopsentry.bus.base import EventLog, Producer
    from shopsentry.config import TopicsSettings

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
_CHUNK = 100_000
_FLUSH_EVERY = 10_000


@dataclass(frozen=True)
class HistoryFiles:
    events_path: Path
    labels_path: Path
    events: int
    labels: int


@dataclass(frozen=True)
class Published:
    events: int
    purchases: int
    behaviour: int
    labels: int


def events_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("user_id", pa.string()),
            ("source", pa.string()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("raw_json", pa.string()),
        ]
    )


def labels_table(labels: list[Label]) -> pa.Table:
    """The canonical labels table (event_id, order_id, user_id, is_fraud, scenario,
    label_source, occurred_at, known_at), plus the purchase's ``source`` so a reader can
    rebuild the :class:`Label` event exactly."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("order_id", pa.string()),
            ("user_id", pa.string()),
            ("source", pa.string()),
            ("is_fraud", pa.bool_()),
            ("scenario", pa.string()),
            ("label_source", pa.string()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("known_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.table(
        {
            "event_id": [x.event_id for x in labels],
            "order_id": [x.order_id for x in labels],
            "user_id": [x.user_id for x in labels],
            "source": [x.source for x in labels],
            "is_fraud": [x.is_fraud for x in labels],
            "scenario": [x.scenario for x in labels],
            "label_source": [x.label_source for x in labels],
            "occurred_at": [x.occurred_at for x in labels],
            "known_at": [x.known_at for x in labels],
        },
        schema=schema,
    )


def history_dir(out_dir: str | Path) -> Path:
    """The history directory, created if needed; a path that cannot be is a ConfigError."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {out}: {exc.strerror}", hint="pass a writable --out directory"
        ) from None
    return out


def write_history(
    sim: Simulator,
    out_dir: str | Path,
    *,
    fmt: Literal["jsonl", "parquet"] = "parquet",
    progress: Progress | None = None,
) -> HistoryFiles:
    """Write ``events.<fmt>`` and ``labels.<fmt>`` into ``out_dir`` (created if needed)."""
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"unknown format {fmt!r}", hint="use jsonl or parquet")
    out = history_dir(out_dir)
    events_path = out / f"events.{fmt}"
    labels_path = out / f"labels.{fmt}"
    count = 0
    if fmt == "jsonl":
        with events_path.open("wb") as fh:
            for rec in sim.records():
                fh.write(rec.raw)
                fh.write(b"\n")
                count += 1
                if progress is not None and count % _FLUSH_EVERY == 0:
                    progress(_FLUSH_EVERY)
        labels = sim.labels()
        with labels_path.open("wb") as fh:
            for label in labels:
                fh.write(encode(label))
                fh.write(b"\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = events_schema()
        with pq.ParquetWriter(events_path, schema, compression="zstd") as writer:
            batch: dict[str, list[object]] = {name: [] for name in schema.names}
            for rec in sim.records():
                batch["event_id"].append(rec.event_id)
                batch["event_type"].append(rec.event_type)
                batch["user_id"].append(rec.user_id)
                batch["source"].append(rec.source)
                batch["occurred_at"].append(rec.ts_us)
                batch["raw_json"].append(rec.raw.decode())
                count += 1
                if len(batch["event_id"]) >= _CHUNK:
                    writer.write_table(pa.table(batch, schema=schema))
                    if progress is not None:
                        progress(len(batch["event_id"]))
                    batch = {name: [] for name in schema.names}
            if batch["event_id"]:
                writer.write_table(pa.table(batch, schema=schema))
        labels = sim.labels()
        pq.write_table(labels_table(labels), labels_path)
    if progress is not None:
        progress(count % (_CHUNK if fmt == "parquet" else _FLUSH_EVERY))
    logger.info(
        "wrote %d events to %s and %d labels to %s", count, events_path, len(labels), labels_path
    )
    return HistoryFiles(events_path, labels_path, count, len(labels))


def _send_labels(sim: Simulator, producer: Producer, topics: TopicsSettings) -> int:
    """Send every label of the run to the labels topic, keyed by user id, and flush."""
    label_topic = topics.labels.name
    n = 0
    for label in sim.labels():
        producer.send(label_topic, encode(label), key=label.user_id.encode())
        n += 1
    producer.flush()
    return n


def publish_labels(sim: Simulator, log: EventLog, topics: TopicsSettings) -> int:
    """Produce only the run's labels (what :func:`publish` sends after the events).

    For a replay that must see labels as they were known: the label consumer holds each
    one back until its ``known_at``, so labels applied before the events they concern
    reach every purchase at the same instants as in real time. Returns how many.
    """
    producer = log.producer()
    try:
        return _send_labels(sim, producer, topics)
    finally:
        producer.close()


def publish(
    sim: Simulator,
    log: EventLog,
    topics: TopicsSettings,
    *,
    speed: float | None = None,
    labels: bool = True,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Published:
    """Produce the run into the event log, keyed by user id.

    ``speed`` None sends as fast as possible (batched, flushed every 10,000 records and at
    the end). Otherwise events are paced on the wall clock: simulated time runs ``speed``
    times real time, and everything sent is flushed before each wait, so consumers see
    events about when they "happen". Labels go to the labels topic after the events;
    consumers must not use a label before its ``known_at``.

    Record timestamps are the send time (Kafka's CreateTime), not ``occurred_at``: the
    payload carries the simulated time, the record the real one, so end-to-end latency
    measured from the record timestamp is the pipeline's even on an accelerated or
    historical clock. Paced runs wait until the simulated end of the window on
    the wall clock before returning, so consecutive windows join up.
    """
    purchase_topic = topics.purchase_events.name
    behaviour_topic = topics.user_behavior.name
    producer = log.producer()
    start_us = sim.config.start_us
    wall0 = clock()
    sent = purchases = pending = 0
    try:
        for rec in sim.records():
            if speed is not None:
                due = (rec.ts_us - start_us) / US / speed
                wait = due - (clock() - wall0)
                if wait > 0:
                    if pending:
                        producer.flush()
                        pending = 0
                    sleep(wait)
            topic = purchase_topic if rec.is_purchase else behaviour_topic
            producer.send(topic, rec.raw, key=rec.user_id.encode())
            sent += 1
            pending += 1
            purchases += rec.is_purchase
            if pending >= _FLUSH_EVERY:
                producer.flush()
                if progress is not None:
                    progress(pending)
                pending = 0
        producer.flush()
        if progress is not None and pending:
            progress(pending)
        if speed is not None:
            rest = (sim.config.end_us - start_us) / US / speed - (clock() - wall0)
            if rest > 0:
                sleep(rest)
        n_labels = _send_labels(sim, producer, topics) if labels else 0
    finally:
        producer.close()
    logger.info("published %d events (%d purchases) and %d labels", sent, purchases, n_labels)
    return Published(events=sent, purchases=purchases, behaviour=sent - purchases, labels=n_labels)
