"""The vectorised side of rules: the columns a batch offers, and the NumPy operations a
compiled condition is made of (each returns values and the rows in error)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

Kind = Literal["num", "bool", "str", "null", "list", "set"]
Mask = NDArray[np.bool_]
ListName = Literal["block", "allow"]
LIST_NAMES: tuple[ListName, ...] = ("block", "allow")


class Columns(Protocol):
    """What one batch of purchases offers a rule (the hot path and the backtest each
    implement it over their own storage)."""

    size: int
    memo: dict[Any, Any]  # per-batch cache shared by the rules (e.g. list membership)

    def purchase(self, field: str) -> tuple[NDArray[Any], Mask]:
        """The field's values and where it is present."""
        ...

    def feature(self, name: str) -> NDArray[np.float64]:
        """The feature's values, NaN where missing."""
        ...

    def score(self) -> NDArray[np.float64]: ...

    def listed(self, list_name: ListName, entity: str) -> frozenset[str]: ...


Value = tuple[Any, Mask | None]  # values (array or scalar) and the rows in error
Evaluator = Callable[[Columns], Value]


@dataclass(frozen=True)
class Expr:
    kind: Kind
    run: Evaluator
    constant: Any = None  # literal value (lists: frozenset), None otherwise
    path: tuple[str, ...] | None = None  # a field reference, for has() and == null


def either(a: Mask | None, b: Mask | None) -> Mask | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def negation(operand: Expr) -> Evaluator:
    def run(cols: Columns) -> Value:
        v, e = operand.run(cols)
        return ~np.asarray(v, dtype=bool), e

    return run


def negative(operand: Expr) -> Evaluator:
    def run(cols: Columns) -> Value:
        v, e = operand.run(cols)
        return -np.asarray(v, dtype=np.float64), e

    return run


def purchase_reader(field: str) -> Evaluator:
    def run(cols: Columns) -> Value:
        values, present = cols.purchase(field)
        return values, (None if present.all() else ~present)

    return run


def score_reader(cols: Columns) -> Value:
    values = cols.score()  # NaN: no score (a backtest row the detector never decided)
    missing = np.isnan(values)
    return values, (missing if missing.any() else None)


def feature_reader(name: str) -> Evaluator:
    def run(cols: Columns) -> Value:
        values = cols.feature(name)
        missing = np.isnan(values)
        return values, (missing if missing.any() else None)

    return run


def compare_strings(
    compare: Callable[[Any, Any], Any], a: Any, b: Any, size: int, err: Mask | None
) -> Mask:
    left = np.broadcast_to(np.asarray(a, dtype=object), (size,))
    right = np.broadcast_to(np.asarray(b, dtype=object), (size,))
    ok = np.ones(size, dtype=bool) if err is None else ~err
    out = np.zeros(size, dtype=bool)
    idx = np.flatnonzero(ok)
    if idx.size:
        out[idx] = np.asarray(compare(left[idx], right[idx]), dtype=bool)
    return out


COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}
ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "mod": np.fmod,
}
SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}
STRING_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}
