from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from shopsentry.rules.language import Vocabulary

FIELDS = {"amount": "num", "item_count": "num", "country": "str", "card_fingerprint": "str"}
FEATURES = ("new_device", "amount_ratio", "purchases_10m")


class Rows:
    """Columns over a list of dict rows (None / missing key = absent)."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        lists: Mapping[tuple[str, str], frozenset[str]] | None = None,
    ) -> None:
        self.rows = rows
        self.size = len(rows)
        self.lists = lists or {}
        self.memo: dict = {}

    def purchase(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        raw = [r.get("purchase", {}).get(name) for r in self.rows]
        present = np.array([v is not None for v in raw], dtype=bool)
        if FIELDS.get(name) == "num":
            return np.array([np.nan if v is None else v for v in raw], dtype=np.float64), present
        return np.array(raw, dtype=object), present

    def feature(self, name: str) -> np.ndarray:
        return np.array(
            [r.get("features", {}).get(name, np.nan) for r in self.rows], dtype=np.float64
        )

    def score(self) -> np.ndarray:
        return np.array([r.get("score", np.nan) for r in self.rows], dtype=np.float64)

    def listed(self, list_name: str, entity: str) -> frozenset[str]:
        return self.lists.get((list_name, entity), frozenset())


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary(FIELDS, frozenset(FEATURES), frozenset({"card", "device"}))  # type: ignore[arg-type]
