"""Backtest a draft rule on past traffic before turning it on.

The history is the warehouse's point-in-time training set (``ml_features.training_set``:
every purchase with the feature values the detector computed for it, by the same
definitions), joined with the purchase's fields (``staging.stg_purchases``) and the
decision the detector made (``staging.stg_decisions``: the model's score and band). The
rule is compiled by the same compiler and evaluated by the same batch evaluator as on the
hot path, over these columns, so what the backtest says a rule would have hit is what the
detector would have hit.

Fraud counts only where its label was known at ``as_of`` (chargebacks and reviews arrive
late): a rule is not credited for fraud nobody could have known about yet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.rules.engine import TableColumns, purchase_field_kinds, vocabulary
from shopsentry.rules.language import compile_rule
from shopsentry.rules.lists import ListIndex
from shopsentry.rules.model import Action, ListEntry

if TYPE_CHECKING:
    import duckdb

TRAINING_SET = "ml_features.training_set"
KEY_COLUMNS = ("event_id", "user_id", "order_id", "amount", "occurred_at", "is_fraud",
               "scenario", "label_known_at")  # fmt: skip


@dataclass
class Tally:
    purchases: int = 0
    hits: int = 0
    fraud_caught: int = 0  # hits whose fraud label was known at as_of
    fraud_known: int = 0  # all purchases with a known fraud label
    extra_reviews: int = 0  # hits the model approved (new work for analysts)
    overlap_with_model: int = 0  # hits the model already reviewed or declined
    amount_saved: float = 0.0  # fraud amount among the hits
    amount_blocked_wrongly: float = 0.0  # legitimate amount among the hits (block rules)
    errors: int = 0  # purchases on which the rule erred

    @property
    def precision(self) -> float | None:
        return self.fraud_caught / self.hits if self.hits else None

    @property
    def recall(self) -> float | None:
        return self.fraud_caught / self.fraud_known if self.fraud_known else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["precision"] = self.precision
        out["recall"] = self.recall
        out["amount_saved"] = round(self.amount_saved, 2)
        out["amount_blocked_wrongly"] = round(self.amount_blocked_wrongly, 2)
        return out


@dataclass
class BacktestReport:
    expression: str
    action: Action
    since: date | None
    until: date | None
    as_of: datetime
    total: Tally
    days: dict[date, Tally] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "action": self.action,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "as_of": self.as_of.isoformat(),
            "total": self.total.as_dict(),
            "days": [{"day": d.isoformat(), **t.as_dict()} for d, t in sorted(self.days.items())],
        }


def _columns(conn: duckdb.DuckDBPyConnection) -> tuple[list[str], set[str], set[str]]:
    """(feature columns of the training set, purchase columns, decision columns)."""

    def names(table: str) -> list[str]:
        schema, name = table.split(".")
        rows = conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        ).fetchall()
        return [r[0] for r in rows]

    training = names(TRAINING_SET)
    features = [c for c in training if c not in KEY_COLUMNS or c == "amount"]
    return features, set(names("staging.stg_purchases")), set(names("staging.stg_decisions"))


def feature_names(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The features the warehouse's history carries (what a backtested rule may read)."""
    return _columns(conn)[0]


def load_history(
    conn: duckdb.DuckDBPyConnection,
    since: date | None,
    until: date | None,
    references: Collection[str] | None = None,
) -> dict[str, NDArray[Any]]:
    """The window's rows as NumPy columns, in (occurred_at, event_id) order: the tally's
    key columns, and the features (``f.<name>``) and purchase fields (``p.<name>``) that
    ``references`` names (a compiled rule's; None: all of them). Reading only what the
    rule reads keeps a backtest's cost to a few columns of a wide table."""
    features, purchase_cols, decision_cols = _columns(conn)
    wanted = [c for c in purchase_field_kinds() if c in purchase_cols and c != "amount"]
    if references is not None:
        features = [c for c in features if f"features.{c}" in references]
        wanted = [c for c in wanted if f"purchase.{c}" in references]
    select = [f't."{c}" as "f.{c}"' for c in features]
    select += ["t.event_id", "t.occurred_at", "t.amount", "t.is_fraud", "t.label_known_at"]
    select += [f'p."{c}" as "p.{c}"' for c in wanted]
    score = "d.probability" if "probability" in decision_cols else "null"
    band = "d.band" if "band" in decision_cols else "null"
    select += [f"{score} as score", f"{band} as model_band"]
    where, params = [], []
    if since is not None:
        where.append("t.occurred_at >= ?")
        params.append(datetime.combine(since, datetime.min.time()))
    if until is not None:
        where.append("t.occurred_at < ?")
        params.append(datetime.combine(until, datetime.min.time()))
    sql = (
        f"select {', '.join(select)} from {TRAINING_SET} as t"
        + (" left join staging.stg_purchases as p using (event_id)" if wanted else "")
        + " left join staging.stg_decisions as d using (event_id)"
        + (f" where {' and '.join(where)}" if where else "")
        + " order by t.occurred_at, t.event_id"
    )
    table = conn.sql(sql, params=params).to_arrow_table()
    return {name: _numpy(table.column(name)) for name in table.column_names}


def _numpy(column: Any) -> NDArray[Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_decimal(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    if pa.types.is_boolean(kind):
        return np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_timestamp(kind):
        return np.asarray(column.to_numpy(zero_copy_only=False)).astype("datetime64[us]")
    return np.asarray(column.to_pylist(), dtype=object)


def history_columns(
    columns: Mapping[str, NDArray[Any]], entries: Sequence[ListEntry] = ()
) -> TableColumns:
    """Rule columns over :func:`load_history`'s rows, with the lists as of ``entries``."""
    return TableColumns(
        len(columns["event_id"]),
        purchases={
            **{k[2:]: v for k, v in columns.items() if k.startswith("p.")},
            "amount": columns["amount"],
            "event_id": columns["event_id"],
        },
        features={k[2:]: v for k, v in columns.items() if k.startswith("f.")},
        scores=columns["score"],
        lists=ListIndex(entries),
    )


def backtest(
    conn: duckdb.DuckDBPyConnection,
    expression: str,
    action: Action,
    *,
    since: date | None = None,
    until: date | None = None,
    as_of: datetime | None = None,
    entries: Sequence[ListEntry] = (),
) -> BacktestReport:
    """Evaluate ``expression`` over the window and tally what it would have done."""
    as_of = as_of or datetime.now(UTC)
    compiled = compile_rule(expression, vocabulary(feature_names(conn)))
    columns = load_history(conn, since, until, compiled.references)
    fires, errors = compiled.evaluate(history_columns(columns, entries))
    return _tally(expression, action, since, until, as_of, columns, fires, errors)


def _tally(
    expression: str,
    action: Action,
    since: date | None,
    until: date | None,
    as_of: datetime,
    columns: Mapping[str, NDArray[Any]],
    fires: NDArray[np.bool_],
    errors: NDArray[np.bool_],
) -> BacktestReport:
    known_at = columns["label_known_at"]
    cutoff = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us")
    known = ~np.isnat(known_at) & (known_at <= cutoff)
    fraud = columns["is_fraud"].astype(bool) & known
    amount = columns["amount"]
    band = columns["model_band"]
    model_flagged = np.isin(band, np.array(["review", "decline"], dtype=object))
    days = columns["occurred_at"].astype("datetime64[D]")
    report = BacktestReport(expression, action, since, until, as_of, Tally())
    unique_days, inverse = np.unique(days, return_inverse=True)
    groups = [(None, np.ones(fires.size, dtype=bool))]
    groups += [(d, inverse == i) for i, d in enumerate(unique_days)]
    for day, rows in groups:
        hit = fires & rows
        tally = Tally(
            purchases=int(rows.sum()),
            hits=int(hit.sum()),
            fraud_caught=int((hit & fraud).sum()),
            fraud_known=int((rows & fraud).sum()),
            extra_reviews=int((hit & ~model_flagged).sum()) if action != "allow" else 0,
            overlap_with_model=int((hit & model_flagged).sum()),
            amount_saved=float(amount[hit & fraud].sum()) if action != "allow" else 0.0,
            amount_blocked_wrongly=float(amount[hit & ~fraud].sum()) if action == "block" else 0.0,
            errors=int((errors & rows).sum()),
        )
        if day is None:
            report.total = tally
        else:
            report.days[day.astype(date)] = tally
    return report
