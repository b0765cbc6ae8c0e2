"""Block and allow lists: the live entries as sets the hot path can test in O(1), and
bulk import from CSV.

An entry counts until its ``expires_at``; the index rebuilds itself when the earliest
expiry passes, so an expired entry stops matching without a new rule-set version.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from shopsentry.rules.model import ListEntry

_EMPTY: frozenset[str] = frozenset()
CSV_COLUMNS = ("list", "entity", "value", "reason", "expires_at")


class ListIndex:
    def __init__(self, entries: Iterable[ListEntry]) -> None:
        self._entries = tuple(entries)
        self._sets: dict[tuple[str, str], frozenset[str]] = {}
        self._next_expiry = float("inf")
        self._built_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def refresh(self, now_s: float) -> None:
        """Rebuild the sets if an entry expired since the last build (cheap otherwise)."""
        if self._built_at is None or now_s >= self._next_expiry:
            self._build(now_s)

    def _build(self, now_s: float) -> None:
        groups: dict[tuple[str, str], set[str]] = {}
        next_expiry = float("inf")
        for entry in self._entries:
            expires = entry.expires_at.timestamp() if entry.expires_at else float("inf")
            if expires <= now_s:
                continue
            next_expiry = min(next_expiry, expires)
            groups.setdefault((entry.list, entry.entity), set()).add(entry.value)
        self._sets = {key: frozenset(values) for key, values in groups.items()}
        self._next_expiry = next_expiry
        self._built_at = now_s

    def listed(self, list_name: str, entity: str) -> frozenset[str]:
        if self._built_at is None:
            self._build(datetime.now(UTC).timestamp())
        return self._sets.get((list_name, entity), _EMPTY)


@dataclass(frozen=True)
class RejectedRow:
    row: int  # 1-based, the header being row 1
    reason: str


@dataclass(frozen=True)
class CsvImport:
    entries: tuple[ListEntry, ...]
    rejected: tuple[RejectedRow, ...]


def read_csv(text: str, *, added_by: str = "", default_list: str | None = None) -> CsvImport:
    """Entries from CSV with a header of ``list,entity,value,reason,expires_at``
    (``list`` may be left out when ``default_list`` is given; ``reason`` and
    ``expires_at`` are optional, the expiry in ISO 8601 with a zone). Every row is
    accounted for: a bad one is returned with its row number and reason."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("entity", "value") if c not in header]
    if "list" not in header and default_list is None:
        missing.insert(0, "list")
    if missing:
        raise ValueError(
            f"the CSV header lacks {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})"
        )
    entries: list[ListEntry] = []
    rejected: list[RejectedRow] = []
    for row_number, row in _rows(reader):
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        fields = {
            "list": clean.get("list") or default_list,
            "entity": clean.get("entity"),
            "value": clean.get("value"),
            "reason": clean.get("reason", ""),
            "expires_at": clean.get("expires_at") or None,
            "added_by": added_by,
        }
        try:
            entries.append(ListEntry.model_validate(fields))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "row"
            rejected.append(RejectedRow(row_number, f"{where}: {first['msg']}"))
    return CsvImport(tuple(entries), tuple(rejected))


def _rows(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, str]]]:
    yield from enumerate(reader, start=2)
