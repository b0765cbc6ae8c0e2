"""Columnar event rows: the simulator's working format before rendering to JSON.

Legitimate traffic is produced as whole numpy columns; scenarios append rows one at a
time through :class:`RowBuilder`. Both become one :class:`Frame`, sorted by time once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# column -> (dtype, fill value meaning "absent")
COLUMNS: dict[str, tuple[Any, Any]] = {
    "ts": (np.int64, 0),  # occurred_at, microseconds since the epoch
    "user": (np.int32, 0),
    "etype": (np.int8, 0),
    "source": (np.int8, 0),
    "device": (np.int64, -1),
    "ip": (np.int64, -1),
    "country": (np.int16, -1),
    "amount": (np.float64, 0.0),  # purchase amount or cart price
    "qty": (np.int32, 1),  # item count or cart quantity
    "pm": (np.int8, -1),  # payment method
    "card": (np.int64, -1),
    "billing": (np.int16, -1),
    "shipping": (np.int16, -1),  # shipping country or the address change's new country
    "store": (np.int64, -1),  # a POS purchase's store (its terminal is the device)
    "addr": (np.int64, -1),  # a web / mobile purchase's shipping address
    "aux": (np.int32, 0),  # category / page / query / reason / address kind / product
    "tag": (np.int16, -1),  # scenario or legit case (index into TAG_NAMES)
    "fraud": (np.bool_, False),
}


@dataclass
class Frame:
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cols["ts"])

    @classmethod
    def empty(cls) -> Frame:
        return cls({k: np.empty(0, dtype=d) for k, (d, _) in COLUMNS.items()})

    @classmethod
    def concat(cls, frames: list[Frame]) -> Frame:
        return cls({k: np.concatenate([f.cols[k] for f in frames]) for k in COLUMNS})

    def take(self, index: np.ndarray) -> Frame:
        return Frame({k: v[index] for k, v in self.cols.items()})

    def sorted(self) -> Frame:
        """Rows in time order; ties keep insertion order, so the result is deterministic."""
        return self.take(np.argsort(self.cols["ts"], kind="stable"))


def filled(n: int, **given: np.ndarray | int | float | bool) -> Frame:
    """A frame of ``n`` rows: the given columns, every other column at its fill value."""
    cols: dict[str, np.ndarray] = {}
    for name, (dtype, fill) in COLUMNS.items():
        value = given.get(name, fill)
        arr = np.asarray(value, dtype=dtype)
        cols[name] = np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr
    return Frame(cols)


class RowBuilder:
    """Append rows one by one (scenario code), then turn them into a frame."""

    def __init__(self) -> None:
        self._rows: dict[str, list[Any]] = {k: [] for k in COLUMNS}

    def add(self, **values: Any) -> None:
        for name, (_, fill) in COLUMNS.items():
            self._rows[name].append(values.get(name, fill))

    def __len__(self) -> int:
        return len(self._rows["ts"])

    def frame(self) -> Frame:
        return Frame({k: np.asarray(self._rows[k], dtype=COLUMNS[k][0]) for k in COLUMNS})
