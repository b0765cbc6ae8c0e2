"""Offline, point-in-time features for training: replay a history through the online
definitions.

Every purchase's vector is read from the state built by the events strictly before it
(in ``occurred_at`` order, ties in table order), by the detector's own feature step
(:func:`~shopsentry.features.definitions.purchase_step`),
so the training data cannot see the future (labels never enter: they are a separate
table). :func:`events_from_table` turns the canonical events table (or a JSONL/Parquet
file of it) into event models in time order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shopsentry.errors import TerminalError
from shopsentry.events.codec import decode
from shopsentry.events.schema import AnyEvent, Purchase
from shopsentry.features.definitions import FEATURE_NAMES, feature_vector, purchase_step
from shopsentry.features.entity import EntityState, entity_keys, observe_entity_label
from shopsentry.features.observe import (
    BehaviorFields,
    BehaviorRow,
    PurchaseFields,
    PurchaseRow,
    observe_behavior_at,
)
from shopsentry.features.state import BehaviorState, PurchaseState

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

_CHUNK_ROWS = 65_536


class HistoryReadError(TerminalError):
    """A history file cannot be read as the canonical events table."""


@dataclass(frozen=True)
class FeatureFrame:
    """One row per purchase, in the order the purchases were replayed."""

    event_ids: list[str]
    user_ids: list[str]
    occurred_at: np.ndarray  # datetime64[us], naive UTC
    order_ids: list[str]
    amounts: np.ndarray  # float64
    X: np.ndarray  # float32 (n, len(FEATURE_NAMES))
    card_ids: list[str | None]  # each purchase's card fingerprint (model cards rank cards)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def to_arrow(self) -> pa.Table:
        """The frame as a table: identifiers, then one float32 column per feature."""
        import pyarrow as pa

        columns: dict[str, Any] = {
            "event_id": pa.array(self.event_ids, pa.string()),
            "user_id": pa.array(self.user_ids, pa.string()),
            "order_id": pa.array(self.order_ids, pa.string()),
            "occurred_at": pa.array(self.occurred_at, pa.timestamp("us", tz="UTC")),
            "amount": pa.array(self.amounts, pa.float64()),
        }
        for j, name in enumerate(FEATURE_NAMES):
            columns[name] = pa.array(self.X[:, j], pa.float32())
        return pa.table(columns)


def feature_matrix(rows: Sequence[tuple[PurchaseState, BehaviorState, Purchase]]) -> np.ndarray:
    """Vectors of many purchases at once, as a float32 matrix (one row per purchase).

    Each row is read from the states as given; callers scoring several purchases of one
    user in a batch observe each before building the next row.
    """
    out = np.empty((len(rows), len(FEATURE_NAMES)), dtype=np.float32)
    for i, (pstate, bstate, purchase) in enumerate(rows):
        out[i] = feature_vector(pstate, bstate, purchase)
    return out


class _Rows:
    """Collects purchase rows into float32 chunks (a million rows stay compact)."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.buf = np.empty((_CHUNK_ROWS, len(FEATURE_NAMES)), dtype=np.float32)
        self.filled = 0
        self.event_ids: list[str] = []
        self.user_ids: list[str] = []
        self.order_ids: list[str] = []
        self.amounts: list[float] = []
        self.times: list[float] = []
        self.card_ids: list[str | None] = []

    def add(
        self,
        row: list[float],
        event_id: str,
        user: str,
        order_id: str,
        amount: float,
        ts: float,
        card: str | None,
    ) -> None:
        self.buf[self.filled] = row
        self.filled += 1
        if self.filled == _CHUNK_ROWS:
            self.chunks.append(self.buf)
            self.buf = np.empty((_CHUNK_ROWS, len(FEATURE_NAMES)), dtype=np.float32)
            self.filled = 0
        self.event_ids.append(event_id)
        self.user_ids.append(user)
        self.order_ids.append(order_id)
        self.amounts.append(amount)
        self.times.append(ts)
        self.card_ids.append(card)

    def frame(self, users: int) -> FeatureFrame:
        chunks = [*self.chunks, self.buf[: self.filled]]
        X = np.concatenate(chunks) if len(chunks) > 1 else chunks[0].copy()
        occurred = np.round(np.asarray(self.times, dtype=np.float64) * 1e6).astype("datetime64[us]")
        logger.info("offline features: %d purchases of %d users", len(self.event_ids), users)
        return FeatureFrame(
            event_ids=self.event_ids,
            user_ids=self.user_ids,
            occurred_at=occurred,
            order_ids=self.order_ids,
            amounts=np.asarray(self.amounts, dtype=np.float64),
            X=X,
            card_ids=self.card_ids,
        )


class TableEvents:
    """The events of a canonical events table, in ``occurred_at`` order.

    Iterating gives validated event models. :func:`offline_features` recognises it and
    reads the encoded JSON directly instead (several times faster than building models;
    the events table only holds events that were validated on the way in).
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __iter__(self) -> Iterator[AnyEvent]:
        for batch in self.table.select(["raw_json"]).to_batches(max_chunksize=_CHUNK_ROWS):
            for raw in batch.column(0).to_pylist():
                yield decode(raw)


def events_from_table(source: pa.Table | str | Path) -> TableEvents:
    """Event models from the canonical events table (or a Parquet / JSONL file of it),
    in ``occurred_at`` order."""
    return TableEvents(read_events_table(source))


def offline_features(
    events: Iterable[AnyEvent] | TableEvents | pa.Table | str | Path,
    *,
    labels: Iterable[KnownLabel] = (),
    progress: Callable[[int], None] | None = None,
) -> FeatureFrame:
    """Point-in-time features of every purchase in ``events`` (in ``occurred_at``
    order): state is updated event by event and each purchase is read before it is
    observed, the same sequence the detector runs live.

    ``events`` may be event models, or a canonical events table / file (the fast path).
    ``labels`` feed the entity fraud features, each from its ``known_at`` on, as the
    detector's label consumer does (without them those features read "no fraud known").
    ``progress`` is called with the number of events done since its last call.
    """
    import pyarrow as pa

    replay = _Replay(labels)
    if isinstance(events, (str, Path, pa.Table)):
        events = events_from_table(events)
    if isinstance(events, TableEvents):
        return _from_table(events.table, replay, progress)
    return _from_models(events, replay, progress)


def known_labels(table: pa.Table) -> list[KnownLabel]:
    """The labels of a canonical labels table (``event_id``, ``is_fraud``, ``known_at``)
    as the detector learns them."""
    import pyarrow as pa

    missing = {"event_id", "is_fraud", "known_at"} - set(table.column_names)
    if missing:
        raise HistoryReadError(
            f"labels table lacks column(s) {sorted(missing)}", hint="use the canonical labels"
        )
    known = table.column("known_at").cast(pa.timestamp("us", tz="UTC")).to_pylist()
    return [
        KnownLabel(str(event_id), bool(fraud), at.timestamp())
        for event_id, fraud, at in zip(
            table.column("event_id").to_pylist(),
            table.column("is_fraud").to_pylist(),
            known,
            strict=True,
        )
        if fraud is not None and at is not None
    ]


@dataclass(frozen=True, slots=True)
class KnownLabel:
    """A label as the detector learns it: the purchase's id, the verdict, and from when
    it is known (epoch seconds)."""

    event_id: str
    is_fraud: bool
    known_at: float


class _Replay:
    """Per-user and per-entity states and the rows read so far: the detector's
    sequence, event by event, with each label applied when its ``known_at`` passes."""

    def __init__(self, labels: Iterable[KnownLabel]) -> None:
        self.pstates: dict[str, PurchaseState] = {}
        self.bstates: dict[str, BehaviorState] = {}
        self.entities: dict[str, EntityState] = {}
        # purchase event id → (its time, its entity keys): what a label applies to
        self.purchases: dict[str, tuple[float, list[str | None]]] = {}
        self.labels = sorted(labels, key=lambda label: label.known_at)
        self.next_label = 0
        self.nobody = BehaviorState()  # read-only stand-in for users without behaviour yet
        self.rows = _Rows()
        self.last_ts = -np.inf

    def in_order(self, ts: float, event_id: object) -> None:
        if ts < self.last_ts:
            raise HistoryReadError(
                f"events are not in occurred_at order at {event_id}",
                hint="sort the history by occurred_at (events_from_table does)",
            )
        self.last_ts = ts
        labels = self.labels
        while self.next_label < len(labels) and labels[self.next_label].known_at <= ts:
            self._apply(labels[self.next_label])
            self.next_label += 1

    def _apply(self, label: KnownLabel) -> None:
        seen = self.purchases.get(label.event_id)
        if seen is None:
            return  # a label of a purchase outside this history
        purchase_ts, keys = seen
        for key in keys:
            if key is not None:
                observe_entity_label(
                    self.entities[key], label.event_id, label.is_fraud, purchase_ts, label.known_at
                )

    def purchase(self, purchase: PurchaseFields, ts: float, event_id: str, order_id: str) -> None:
        user = purchase.user_id
        pstate = self.pstates.get(user)
        if pstate is None:
            pstate = self.pstates[user] = PurchaseState()
        keys = entity_keys(purchase)
        entities = self.entities
        states: list[EntityState | None] = []
        for key in keys:
            if key is None:
                states.append(None)
            else:
                state = entities.get(key)
                if state is None:
                    state = entities[key] = EntityState()
                states.append(state)
        row = purchase_step(pstate, self.bstates.get(user, self.nobody), states, purchase, ts)
        self.purchases[event_id] = (ts, keys)
        self.rows.add(row, event_id, user, order_id, purchase.amount, ts, purchase.card_fingerprint)

    def behavior(self, event: BehaviorFields, user: str, ts: float) -> None:
        bstate = self.bstates.get(user)
        if bstate is None:
            bstate = self.bstates[user] = BehaviorState()
        observe_behavior_at(bstate, event, ts)

    def frame(self) -> FeatureFrame:
        return self.rows.frame(len(self.pstates))


def _from_models(
    events: Iterable[AnyEvent], replay: _Replay, progress: Callable[[int], None] | None
) -> FeatureFrame:
    done = 0
    for event in events:
        ts = event.occurred_at.timestamp()
        replay.in_order(ts, event.event_id)
        if isinstance(event, Purchase):
            replay.purchase(event, ts, event.event_id, event.order_id)
        else:
            replay.behavior(event, event.user_id, ts)
        done += 1
        if progress is not None and done == _CHUNK_ROWS:
            progress(done)
            done = 0
    if progress is not None and done:
        progress(done)
    return replay.frame()


def _from_table(
    table: pa.Table, replay: _Replay, progress: Callable[[int], None] | None
) -> FeatureFrame:
    import orjson

    loads = orjson.loads
    parse_time = datetime.fromisoformat
    for batch in table.select(["raw_json"]).to_batches(max_chunksize=_CHUNK_ROWS):
        for raw in batch.column(0).to_pylist():
            d = loads(raw)
            ts = parse_time(d["occurred_at"]).timestamp()
            replay.in_order(ts, d.get("event_id"))
            if d["event_type"] == "purchase":
                replay.purchase(PurchaseRow(d), ts, d["event_id"], d["order_id"])
            else:
                replay.behavior(BehaviorRow(d), d["user_id"], ts)
        if progress is not None:
            progress(batch.num_rows)
    return replay.frame()


def read_events_table(source: pa.Table | str | Path) -> pa.Table:
    """The canonical events table from a table, a Parquet file or a JSONL file (one
    encoded event per line), sorted by ``occurred_at`` (stable: ties keep file order)."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        table = source
    else:
        path = Path(source)
        if not path.is_file():
            raise HistoryReadError(
                f"no events file at {path}", hint="write one with `shopsentry simulate --out DIR`"
            )
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            table = _jsonl_table(path)
    missing = {"raw_json", "occurred_at"} - set(table.column_names)
    if missing:
        raise HistoryReadError(
            f"events table lacks column(s) {sorted(missing)}", hint="use the canonical events table"
        )
    column = table.column("occurred_at").cast(pa.timestamp("us", tz="UTC"))
    times = column.to_numpy().astype(np.int64)
    if len(times) and bool(np.all(times[1:] >= times[:-1])):
        return table  # already in order (the simulator writes it so): skip the sort
    return table.sort_by([("occurred_at", "ascending")])


def _jsonl_table(path: Path) -> pa.Table:
    import orjson
    import pyarrow as pa

    raws: list[str] = []
    times: list[Any] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                times.append(
                    np.datetime64(doc["occurred_at"].removesuffix("Z").split("+")[0], "us")
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
                raise HistoryReadError(
                    f"{path}:{number} is not an encoded event ({exc})",
                    hint="one JSON event per line",
                ) from None
            raws.append(line.decode().rstrip("\n"))
    return pa.table(
        {
            "occurred_at": pa.array(
                np.asarray(times, dtype="datetime64[us]"), pa.timestamp("us", tz="UTC")
            ),
            "raw_json": pa.array(raws, pa.string()),
        }
    )
