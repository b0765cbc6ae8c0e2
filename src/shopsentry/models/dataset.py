"""The labelled data set a model is trained and judged on.

Two sources give the same :class:`TrainingSet`:

* the warehouse's ML_FEATURES layer (``ml_features.training_set`` in the DuckDB file),
  read read-only, when it exists: features were computed there by the batch path with
  the same definitions;
* a history directory (``events.parquet``/``.jsonl`` and ``labels.parquet``/``.jsonl``,
  as the simulator writes them), run through the offline, point-in-time features.

Labels arrive late (chargebacks weeks after the purchase), so each row keeps both its
eventual truth (``is_fraud``, used only to *evaluate* on the held-out window) and when
that truth became known (``label_known_at``): training sees a purchase as fraud only if
its label was known at the training time ``as_of``. A fraud whose chargeback has not
arrived yet looks legitimate to the trainer, exactly as it would in production.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from shopsentry.errors import TrainingDataError

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

WAREHOUSE_TABLE = "ml_features.training_set"
_KEY_COLUMNS = (
    "event_id", "user_id", "order_id", "amount", "occurred_at", "is_fraud", "scenario",
    "label_known_at",
)  # fmt: skip
Progress = Callable[[str, int, int | None], None]  # (step, done, total)
T = TypeVar("T")


@dataclass(frozen=True)
class TrainingSet:
    """One row per purchase, in ``occurred_at`` order, features aligned with ``feature_names``."""

    feature_names: tuple[str, ...]
    event_ids: NDArray[np.object_]
    user_ids: NDArray[np.object_]
    order_ids: NDArray[np.object_]
    occurred_at: NDArray[np.datetime64]  # UTC, naive datetime64[ns]
    amounts: NDArray[np.float64]
    X: NDArray[np.float32]
    is_fraud: NDArray[np.bool_]  # eventual truth
    scenario: NDArray[np.object_]
    label_known_at: NDArray[np.datetime64]  # NaT: no label row at all
    source: str
    card_ids: NDArray[np.object_] | None = None  # each purchase's card (history only)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def subset(self, mask: NDArray[np.bool_]) -> TrainingSet:
        return replace(
            self,
            event_ids=self.event_ids[mask],
            user_ids=self.user_ids[mask],
            order_ids=self.order_ids[mask],
            occurred_at=self.occurred_at[mask],
            amounts=self.amounts[mask],
            X=self.X[mask],
            is_fraud=self.is_fraud[mask],
            scenario=self.scenario[mask],
            label_known_at=self.label_known_at[mask],
            card_ids=None if self.card_ids is None else self.card_ids[mask],
        )

    def known_labels(self, as_of: datetime) -> NDArray[np.bool_]:
        """Fraud as the trainer sees it at ``as_of``: only labels known by then count."""
        cutoff = to_datetime64(as_of)
        known = ~np.isnat(self.label_known_at) & (self.label_known_at <= cutoff)
        return self.is_fraud & known

    @property
    def start(self) -> datetime:
        return from_datetime64(self.occurred_at.min())

    @property
    def end(self) -> datetime:
        return from_datetime64(self.occurred_at.max())


def to_datetime64(value: datetime) -> np.datetime64:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "ns")


def from_datetime64(value: np.datetime64) -> datetime:
    micros = int(np.asarray(value).astype("datetime64[us]").astype(np.int64))
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _datetimes(values: Any) -> NDArray[np.datetime64]:
    """Any sequence of timestamps (numpy, arrow, tz-aware datetimes) as naive-UTC datetime64[ns]."""
    import pandas as pd

    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]")
    index = pd.to_datetime(
        pd.Series(list(values) if not hasattr(values, "to_pandas") else values.to_pandas()),
        utc=True,
    )
    out: NDArray[np.datetime64] = index.dt.tz_convert(None).to_numpy("datetime64[ns]")
    return out


@dataclass(frozen=True)
class Split:
    train: TrainingSet
    valid: TrainingSet
    cutoff: datetime


def time_split(data: TrainingSet, validation_days: int) -> Split:
    """Train on the earlier days, hold out the latest ``validation_days`` calendar days (UTC).

    The cut is at a midnight so a day is never split, and nothing of the held-out
    window (not even its first hour) is seen in training.
    """
    if len(data) == 0:
        raise TrainingDataError(
            "no purchases to split", hint="check the history or the --as-of date"
        )
    last_day = data.occurred_at.max().astype("datetime64[D]")
    cutoff64 = (last_day + np.timedelta64(1 - validation_days, "D")).astype("datetime64[ns]")
    train_mask = data.occurred_at < cutoff64
    if not train_mask.any():
        raise TrainingDataError(
            f"all purchases fall in the last {validation_days} days held out for validation",
            hint="use a longer history or lower model.validation_days",
        )
    return Split(
        train=data.subset(train_mask),
        valid=data.subset(~train_mask),
        cutoff=from_datetime64(cutoff64),
    )


# --- warehouse -----------------------------------------------------------------------


def warehouse_has_training_set(path: Path) -> bool:
    if not path.is_file():
        return False
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            found = con.execute(
                "select count(*) from information_schema.tables"
                " where table_schema = ? and table_name = ?",
                WAREHOUSE_TABLE.split("."),
            ).fetchone()
    except duckdb.Error as exc:
        logger.warning("warehouse %s cannot be read: %s", path, exc)
        return False
    return bool(found and found[0])


def from_warehouse(
    path: Path, feature_names: tuple[str, ...], as_of: datetime | None = None
) -> TrainingSet:
    """Read ``ml_features.training_set`` read-only (the batch job may hold the writer)."""
    import duckdb

    if not warehouse_has_training_set(path):
        raise TrainingDataError(
            f"warehouse {path} has no {WAREHOUSE_TABLE}",
            hint="run `shopsentry batch run hourly_etl` first, or pass --history DIR",
        )
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            columns = {row[0] for row in con.execute(f"describe {WAREHOUSE_TABLE}").fetchall()}
            missing = [c for c in feature_names if c not in columns]
            if missing:
                raise TrainingDataError(
                    f"{WAREHOUSE_TABLE} lacks features {', '.join(missing[:5])}",
                    hint="rebuild the warehouse's ML_FEATURES layer with this version (dbt run)",
                )
            # a feature may share its name with a key column ("amount"): select it once
            extra = [c for c in feature_names if c not in _KEY_COLUMNS]
            wanted = "".join(f', "{c}"' for c in extra)
            where = "where occurred_at <= ?" if as_of else ""
            params = [as_of.astimezone(UTC).replace(tzinfo=None)] if as_of else []
            relation = con.sql(
                "select event_id, user_id, order_id, amount, occurred_at, is_fraud, scenario, "
                f"label_known_at{wanted} from {WAREHOUSE_TABLE} {where}"
                " order by occurred_at, event_id",
                params=params or None,
            )
            # DuckDB 2 has to_arrow_table; older releases return the table from arrow()
            fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
            table = fetch()
    except duckdb.Error as exc:
        raise TrainingDataError(
            f"reading {WAREHOUSE_TABLE} failed: {exc}", hint="is the warehouse being rebuilt?"
        ) from None
    X = np.column_stack(
        [table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in feature_names]
    )
    return TrainingSet(
        feature_names=feature_names,
        event_ids=np.asarray(table.column("event_id").to_pylist(), dtype=object),
        user_ids=np.asarray(table.column("user_id").to_pylist(), dtype=object),
        order_ids=np.asarray(table.column("order_id").to_pylist(), dtype=object),
        occurred_at=_datetimes(table.column("occurred_at")),
        amounts=table.column("amount").to_numpy(zero_copy_only=False).astype(np.float64),
        X=np.ascontiguousarray(X, dtype=np.float32),
        is_fraud=np.asarray([bool(v) for v in table.column("is_fraud").to_pylist()], dtype=bool),
        scenario=np.asarray(table.column("scenario").to_pylist(), dtype=object),
        label_known_at=_datetimes(table.column("label_known_at")),
        source=f"warehouse:{path}",
    )


# --- history directory ---------------------------------------------------------------


def _find(directory: Path, stem: str) -> Path:
    for suffix in (".parquet", ".jsonl", ".ndjson"):
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise TrainingDataError(
        f"{directory} has no {stem}.parquet or {stem}.jsonl",
        hint="write one with `shopsentry simulate --out DIR --format parquet`",
    )


def read_table(path: Path) -> pa.Table:
    """A Parquet file, or JSON lines with one object per row, as an Arrow table."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        return pj.read_json(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise TrainingDataError(
            f"cannot read {path}: {exc}", hint="is the file complete?"
        ) from None


def from_history(
    directory: Path,
    as_of: datetime | None = None,
    progress: Progress | None = None,
) -> TrainingSet:
    """Point-in-time features for every purchase in the history, joined to its label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from shopsentry.errors import TerminalError
    from shopsentry.features import FEATURE_NAMES, TableEvents, offline_features, read_events_table
    from shopsentry.features.offline import known_labels

    try:
        events = read_events_table(_find(directory, "events"))
    except TerminalError as exc:
        raise TrainingDataError(exc.message, hint=exc.hint) from None
    labels = read_table(_find(directory, "labels"))
    if as_of is not None:
        kind = events.schema.field("occurred_at").type
        moment = as_of.astimezone(UTC)
        if not getattr(kind, "tz", None):
            moment = moment.replace(tzinfo=None)  # naive columns hold UTC
        cutoff = pa.scalar(moment, type=kind)
        events = events.filter(pc.less_equal(events.column("occurred_at"), cutoff))
    total = events.num_rows
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress("features", done, total)

    # Entity fraud features learn from labels as the detector does: each from its known_at.
    frame = offline_features(TableEvents(events), labels=known_labels(labels), progress=advance)
    feature_names = tuple(FEATURE_NAMES)
    event_ids = np.asarray(frame.event_ids, dtype=object)
    is_fraud, scenario, known_at = _join_labels(event_ids, labels)
    return TrainingSet(
        feature_names=feature_names,
        event_ids=event_ids,
        user_ids=np.asarray(frame.user_ids, dtype=object),
        order_ids=np.asarray(frame.order_ids, dtype=object),
        occurred_at=_datetimes(frame.occurred_at),
        amounts=np.asarray(frame.amounts, dtype=np.float64),
        X=np.ascontiguousarray(frame.X, dtype=np.float32),
        is_fraud=is_fraud,
        scenario=scenario,
        label_known_at=known_at,
        source=f"history:{directory}",
        card_ids=np.asarray(frame.card_ids, dtype=object),
    )


def _join_labels(
    event_ids: NDArray[np.object_], labels: pa.Table
) -> tuple[NDArray[np.bool_], NDArray[np.object_], NDArray[np.datetime64]]:
    """Each purchase's label (the last one per event_id wins).

    No label row means legitimate, and never known (NaT).
    """
    need = {"event_id", "is_fraud", "known_at"}
    if not need <= set(labels.column_names):
        raise TrainingDataError(
            f"labels lack columns {sorted(need - set(labels.column_names))}",
            hint="use the canonical labels table",
        )
    ids = labels.column("event_id").to_pylist()
    fraud = labels.column("is_fraud").to_pylist()
    scen = (
        labels.column("scenario").to_pylist()
        if "scenario" in labels.column_names
        else [None] * len(ids)
    )
    known = _datetimes(labels.column("known_at"))
    position = {event_id: i for i, event_id in enumerate(ids)}
    n = event_ids.shape[0]
    is_fraud = np.zeros(n, bool)
    scenario = np.full(n, None, dtype=object)
    known_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    matched = 0
    for row, event_id in enumerate(event_ids):
        i = position.get(event_id)
        if i is None:
            continue
        matched += 1
        is_fraud[row] = bool(fraud[i])
        scenario[row] = scen[i]
        known_at[row] = known[i]
    logger.info(
        "labels: %d of %d purchases have a label row, %d fraud", matched, n, int(is_fraud.sum())
    )
    return is_fraud, scenario, known_at


def build_training_set(
    warehouse: Path,
    *,
    history: Path | None = None,
    use_warehouse: bool | None = None,
    as_of: datetime | None = None,
    progress: Progress | None = None,
) -> TrainingSet:
    """The data set for one training run, from the source the caller asked for: the
    warehouse file ``warehouse`` or the ``history`` directory.

    ``use_warehouse=None`` means "the warehouse if it has the training set, else the
    history directory"; rows after ``as_of`` are dropped.
    """
    from shopsentry.models.scorer import current_feature_names

    feature_names = current_feature_names()
    if feature_names is None:
        raise TrainingDataError("the features part is not installed", hint="reinstall shopsentry")
    if use_warehouse or (
        use_warehouse is None and history is None and warehouse_has_training_set(warehouse)
    ):
        data = from_warehouse(warehouse, feature_names, as_of)
    elif history is not None:
        data = from_history(history, as_of, progress)
    else:
        raise TrainingDataError(
            f"no training data: {warehouse} has no {WAREHOUSE_TABLE} and no history was given",
            hint="pass --history DIR (from `shopsentry simulate --out DIR`) or load the warehouse",
        )
    if as_of is not None:
        data = data.subset(data.occurred_at <= to_datetime64(as_of))
    if len(data) == 0:
        raise TrainingDataError(
            f"no purchases in {data.source}", hint="check the history or the --as-of date"
        )
    return data
