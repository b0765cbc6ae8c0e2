"""Your own transactions in: one purchase per row of a CSV, Parquet or JSON-lines file,
mapped column by column onto the purchase event, written as a history directory
(``events.parquet`` + ``labels.parquet``, the layout ``shopsentry simulate --out``
writes) that ``shopsentry train --history`` and ``hourly_etl --history`` read.

A fraud column becomes labels: each flagged row gets a label known at its known-at
column, or ``occurred_at`` + a delay (``history_import.label_delay_days``). Every row is
accounted for: imported, or written to the rejects file (JSON lines: row number, field,
reason, the row's values). A mapping that names a column the file lacks, or a required
field with no column, stops the import before any row is read.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from shopsentry.errors import TerminalError
from shopsentry.events.codec import encode
from shopsentry.events.schema import LABEL, PURCHASE, Label, Purchase
from shopsentry.warehouse.tabular import BATCH_ROWS, read_rows

if TYPE_CHECKING:
    from shopsentry.config import HistoryImportSettings

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]

# The fields a column can map to: the purchase event's, then the label's.
FIELDS: dict[str, str] = {
    "event_id": "transaction id (unique)",
    "user_id": "customer id",
    "occurred_at": "time (ISO 8601, naive = UTC, or epoch seconds)",
    "amount": "amount (> 0)",
    "order_id": "order id (default: the transaction id)",
    "source": "web | mobile | pos (default: pos when a terminal is mapped, else web)",
    "currency": "ISO currency code",
    "item_count": "number of items (default 1)",
    "payment_method": "card | paypal | apple_pay | google_pay | bank_transfer | gift_card | cash",
    "card_fingerprint": "card fingerprint",
    "device_fingerprint": "device fingerprint",
    "ip_fingerprint": "IP fingerprint",
    "country": "country of the purchase (ISO 3166 alpha-2)",
    "billing_country": "billing country (default: country)",
    "shipping_country": "shipping country",
    "merchant_category": "merchant category",
    "store_id": "store (POS)",
    "terminal_id": "terminal (POS)",
    "shipping_address_hash": "shipping-address fingerprint (web / mobile)",
    "is_fraud": "fraud flag (1/0, true/false, yes/no): flagged rows become labels",
    "known_at": "when the fraud became known (default: occurred_at + the label delay)",
    "scenario": "fraud scenario name, kept on the label",
}
REQUIRED = ("event_id", "user_id", "occurred_at", "amount")
_LABEL_FIELDS = ("is_fraud", "known_at", "scenario")
_INTS = frozenset({"item_count"})
_TRUE = frozenset({"1", "true", "t", "yes", "y", "fraud"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "legit"})


class HistoryImportError(TerminalError):
    """The file or the mapping cannot be imported (a missing or unknown column)."""


class _Reject(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ColumnMapping:
    """Which column feeds which field, constants for fields without one, the delay."""

    columns: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    label_delay: timedelta = timedelta(days=7)


@dataclass
class ImportSummary:
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    fraud_labels: int = 0
    not_fraud: int = 0
    unflagged: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    columns: dict[str, str] = field(default_factory=dict)  # field -> column used
    ignored: tuple[str, ...] = ()  # the file's columns no field reads
    events_path: Path | None = None
    labels_path: Path | None = None
    rejects_path: Path | None = None
    seconds: float = 0.0


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise HistoryImportError(f"bad {what} {item!r}", hint="write it as FIELD=VALUE")
        out[name.strip()] = value.strip()
    return out


def build_mapping(
    settings: HistoryImportSettings,
    *,
    toml_path: Path | None = None,
    columns: Sequence[str] = (),
    defaults: Sequence[str] = (),
    label_delay_days: float | None = None,
) -> ColumnMapping:
    """The mapping from a TOML file (``[columns]``, ``[defaults]``, ``[labels] delay_days``)
    overridden by ``FIELD=COLUMN`` / ``FIELD=VALUE`` flags; unknown fields are refused."""
    doc: dict[str, Any] = {}
    if toml_path is not None:
        try:
            doc = tomllib.loads(toml_path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise HistoryImportError(f"cannot read mapping {toml_path}: {exc}") from None
        unknown_sections = set(doc) - {"columns", "defaults", "labels"}
        if unknown_sections:
            raise HistoryImportError(
                f"unknown section(s) {sorted(unknown_sections)} in {toml_path}",
                hint="use [columns], [defaults] and [labels]",
            )
    mapped = {k: str(v) for k, v in doc.get("columns", {}).items()} | _pairs(columns, "--map")
    constants = {
        "country": settings.country,
        "currency": settings.currency,
        "payment_method": settings.payment_method,
        "item_count": "1",
    }
    constants |= {k: str(v) for k, v in doc.get("defaults", {}).items()}
    constants |= _pairs(defaults, "--default")
    for name in [*mapped, *constants]:
        if name not in FIELDS:
            raise HistoryImportError(
                f"unknown field {name!r} in the mapping", hint=f"fields: {', '.join(FIELDS)}"
            )
    days = doc.get("labels", {}).get("delay_days", settings.label_delay_days)
    if label_delay_days is not None:
        days = label_delay_days
    if not isinstance(days, int | float) or days < 0:
        raise HistoryImportError(f"bad label delay {days!r}", hint="a number of days >= 0")
    return ColumnMapping(mapped, constants, timedelta(days=float(days)))


def resolve_columns(mapping: ColumnMapping, available: list[str], path: Path) -> dict[str, str]:
    """Field -> column for this file: the mapping's, plus any column named like a field.
    A mapped column the file lacks, or a required field with neither a column nor a
    default, is an error naming it."""
    have = set(available)
    listing = ", ".join(available) or "none"
    for name, column in mapping.columns.items():
        if column not in have:
            raise HistoryImportError(
                f"column {column!r} (mapped to {name}) is not in {path.name}",
                hint=f"its columns: {listing}",
            )
    used = dict(mapping.columns)
    for name in FIELDS:
        if name not in used and name in have:
            used[name] = name
    for name in REQUIRED:
        if name not in used and name not in mapping.defaults:
            raise HistoryImportError(
                f"no column for the required field {name!r} in {path.name}",
                hint=f"map one with --map {name}=COLUMN; its columns: {listing}",
            )
    return used


# --- converting one row -------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = _text(value)
        if text is None:
            raise _Reject(name, "missing")
        try:
            moment = datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _Reject(name, f"not a time: {text[:40]!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Reject("is_fraud", f"not a fraud flag: {text[:40]!r} (use 1/0, true/false, yes/no)")


class _Converter:
    """One row -> (purchase, label or None), or :class:`_Reject` naming the field."""

    def __init__(self, mapping: ColumnMapping, columns: dict[str, str]) -> None:
        self.columns = columns
        self.defaults = dict(mapping.defaults)
        if "source" not in columns and "source" not in self.defaults:
            self.defaults["source"] = "pos" if "terminal_id" in columns else "web"
        self.delay = mapping.label_delay
        self.seen: dict[str, int] = {}

    def value(self, row: dict[str, Any], name: str) -> Any:
        column = self.columns.get(name)
        value = row.get(column) if column is not None else None
        if _text(value) is None and not isinstance(value, datetime):
            return self.defaults.get(name)
        return value

    def purchase(self, row: dict[str, Any], number: int) -> Purchase:
        doc: dict[str, Any] = {"event_type": "purchase"}
        for name in FIELDS:
            if name in _LABEL_FIELDS:
                continue
            value = self.value(row, name)
            if name == "occurred_at":
                doc[name] = _time(value, name)
            elif name == "amount" and value is not None:
                try:
                    doc[name] = float(str(value).strip())
                except ValueError:
                    raise _Reject(name, f"not a number: {str(value)[:40]!r}") from None
            elif name in _INTS and value is not None:
                try:
                    doc[name] = int(float(str(value).strip()))
                except ValueError:
                    raise _Reject(name, f"not an integer: {str(value)[:40]!r}") from None
            else:
                doc[name] = _text(value)
        doc["order_id"] = doc["order_id"] or doc["event_id"]
        doc["billing_country"] = doc["billing_country"] or doc["country"]
        try:
            event = PURCHASE.validate_python({k: v for k, v in doc.items() if v is not None})
        except ValidationError as exc:
            raise _rejected(exc) from None
        first = self.seen.setdefault(event.event_id, number)
        if first != number:
            raise _Reject("event_id", f"duplicate of row {first}")
        return event

    def label(self, row: dict[str, Any], event: Purchase) -> tuple[bool | None, Label | None]:
        """The row's fraud flag (None: no flag) and, for fraud, its label."""
        flag = _flag(self.value(row, "is_fraud"))
        if not flag:
            return flag, None
        known = self.value(row, "known_at")
        known_at = event.occurred_at + self.delay if known is None else _time(known, "known_at")
        if known_at < event.occurred_at:
            raise _Reject("known_at", "before occurred_at")
        try:
            label = LABEL.validate_python(
                {
                    "event_id": event.event_id,
                    "source": event.source,
                    "user_id": event.user_id,
                    "occurred_at": event.occurred_at,
                    "order_id": event.order_id,
                    "is_fraud": True,
                    "scenario": _text(self.value(row, "scenario")),
                    "label_source": "chargeback",
                    "known_at": known_at,
                }
            )
        except ValidationError as exc:
            raise _rejected(exc) from None
        return True, label


def _rejected(exc: ValidationError) -> _Reject:
    err = exc.errors(include_url=False)[0]
    return _Reject(".".join(str(p) for p in err["loc"]) or "(row)", err["msg"])


# --- the import ---------------------------------------------------------------------


class _Rejects:
    """The rejects file, opened on the first rejected row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def write(self, number: int, field_name: str, reason: str, row: Any) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("wb")
        values = row if isinstance(row, dict) else {"line": bytes(row).decode(errors="replace")}
        doc = {"row": number, "field": field_name, "reason": reason, "values": values}
        self._fh.write(orjson.dumps(doc, default=str) + b"\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def default_rejects_path(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".rejects.jsonl")


class _Events:
    """``events.parquet`` written batch by batch (memory stays one batch whatever the
    file's size) under a temporary name, renamed into place once complete."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / "events.parquet"
        self._partial = out_dir / "events.parquet.partial"
        self._writer: Any = None
        self._batch: list[Purchase] = []
        self.count = 0

    def add(self, event: Purchase) -> None:
        self._batch.append(event)
        if len(self._batch) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from shopsentry.simulator.output import events_schema, history_dir

        if not self._batch:
            return
        if self._writer is None:
            history_dir(self.out_dir)
            self._writer = pq.ParquetWriter(self._partial, events_schema(), compression="zstd")
        events, self._batch = self._batch, []
        self._writer.write_table(
            pa.table(
                {
                    "event_id": [e.event_id for e in events],
                    "event_type": ["purchase"] * len(events),
                    "user_id": [e.user_id for e in events],
                    "source": [e.source for e in events],
                    "occurred_at": [e.occurred_at for e in events],
                    "raw_json": [encode(e).decode() for e in events],
                },
                schema=events_schema(),
            )
        )
        self.count += len(events)

    def close(self, *, complete: bool) -> None:
        if complete:
            self.flush()
        if self._writer is not None:
            self._writer.close()
            if complete:
                self._partial.replace(self.path)
            else:
                self._partial.unlink(missing_ok=True)


def import_history(
    path: Path,
    out_dir: Path,
    mapping: ColumnMapping,
    *,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import ``path`` into ``out_dir`` (``events.parquet`` in the file's order, which
    readers sort by time, and ``labels.parquet``); rows that cannot be imported go to
    ``rejects_path`` (default: ``<out_dir>.rejects.jsonl`` beside the directory, so a
    backfill of the directory never reads it) with their row number (1 = the first data
    row) and the reason."""
    started = time.perf_counter()
    available, total, batches = read_rows(path, HistoryImportError)
    columns = resolve_columns(mapping, available, path)
    summary = ImportSummary(columns=columns)
    summary.ignored = tuple(c for c in available if c not in set(columns.values()))
    convert = _Converter(mapping, columns)
    rejects = _Rejects(rejects_path or default_rejects_path(out_dir))
    events = _Events(out_dir)
    labels: list[Label] = []
    complete = False
    try:
        for batch in batches:
            for row in batch:
                summary.rows += 1
                try:
                    if not isinstance(row, dict):
                        raise _Reject("(row)", "not a JSON object")
                    event = convert.purchase(row, summary.rows)
                    flag, label = convert.label(row, event)
                except _Reject as bad:
                    summary.rejected += 1
                    summary.reasons[f"{bad.field}: {bad.reason}"] += 1
                    rejects.write(summary.rows, bad.field, bad.reason, row)
                    continue
                events.add(event)
                if label is not None:
                    labels.append(label)
                elif flag is None:
                    summary.unflagged += 1
                else:
                    summary.not_fraud += 1
            if progress is not None:
                progress(summary.rows, total)
        complete = True
    finally:
        rejects.close()
        events.close(complete=complete)
    summary.imported, summary.fraud_labels = events.count, len(labels)
    summary.rejects_path = rejects.path if summary.rejected else None
    if not events.count:
        raise HistoryImportError(
            f"no row of {path.name} could be imported ({summary.rejected} rejected)",
            hint=f"see {rejects.path}" if summary.rejected else "the file has no rows",
        )
    import pyarrow.parquet as pq

    from shopsentry.simulator.output import labels_table

    summary.events_path, summary.labels_path = events.path, out_dir / "labels.parquet"
    pq.write_table(labels_table(labels), summary.labels_path)
    summary.seconds = time.perf_counter() - started
    logger.info(
        "imported %d of %d rows of %s (%d rejected, %d fraud labels)",
        summary.imported,
        summary.rows,
        path,
        summary.rejected,
        summary.fraud_labels,
    )
    return summary
