"""`history import`: a file in the common public layout round-trips into the history
format (CSV, Parquet and JSONL alike), fraud flags become labels known late, every row
is imported or rejected with its row number and reason, and a bad mapping is one line."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shopsentry.cli import app
from shopsentry.config import HistoryImportSettings
from shopsentry.events.codec import decode_as
from shopsentry.features import read_events_table
from shopsentry.models.dataset import read_table
from shopsentry.warehouse.history_import import (
    HistoryImportError,
    build_mapping,
    import_history,
)
from tests.unit.warehouse.handbook import COLUMNS, MAPPING, handbook_rows, write_handbook_csv

SETTINGS = HistoryImportSettings()


def mapping(**extra: str) -> list[str]:
    return [f"{k}={v}" for k, v in {**MAPPING, **extra}.items()]


@pytest.fixture(scope="module")
def rows() -> list[list[object]]:
    return handbook_rows(customers=60, terminals=40, days=10, seed=4)


def _write(path: Path, rows: list[list[object]]) -> Path:
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    else:
        table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})
        if path.suffix == ".parquet":
            pq.write_table(table, path)
        else:
            path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in table.to_pylist()))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_public_layout_round_trips_into_the_history_format(
    tmp_path: Path, rows: list[list[object]], suffix: str
) -> None:
    source = _write(tmp_path / f"tx{suffix}", rows)
    summary = import_history(source, tmp_path / "out", build_mapping(SETTINGS, columns=mapping()))
    zero = sum(1 for r in rows if float(str(r[4])) <= 0)  # the layout has a few 0.00 amounts
    assert summary.rows == len(rows) == summary.imported + summary.rejected
    assert summary.rejected == zero
    assert set(summary.ignored) == {"TX_TIME_SECONDS", "TX_TIME_DAYS"}
    events = read_events_table(summary.events_path)
    assert events.num_rows == summary.imported
    by_id = {str(r[0]): r for r in rows}
    for raw in events.column("raw_json").to_pylist()[:500]:
        purchase = decode_as("purchase", raw)
        row = by_id[purchase.event_id]
        assert purchase.user_id == str(row[2]) and purchase.terminal_id == str(row[3])
        assert purchase.source == "pos" and purchase.amount == pytest.approx(float(str(row[4])))
        assert purchase.occurred_at.strftime("%Y-%m-%d %H:%M:%S") == row[1]
    labels = read_table(summary.labels_path)
    fraud = {str(r[0]) for r in rows if r[7] == 1 and float(str(r[4])) > 0}
    assert set(labels.column("event_id").to_pylist()) == fraud
    assert summary.fraud_labels == len(fraud) and summary.not_fraud == summary.imported - len(fraud)
    for label in labels.to_pylist():
        assert label["known_at"] - label["occurred_at"] == timedelta(days=7)
        assert label["is_fraud"] and label["scenario"] in {"1", "2", "3"}


def test_bad_rows_are_rejected_with_row_number_and_reason(tmp_path: Path) -> None:
    good = ["1", "2018-04-01 10:00:00", "7", "3", "12.50", 0, 0, "0", "0"]
    bad = [
        ["2", "2018-04-01 11:00:00", "7", "3", "-4", 0, 0, "0", "0"],  # amount
        ["3", "last tuesday", "7", "3", "5", 0, 0, "0", "0"],  # time
        ["1", "2018-04-01 12:00:00", "7", "3", "5", 0, 0, "0", "0"],  # duplicate id
        ["4", "2018-04-01 13:00:00", "7", "3", "5", 0, 0, "maybe", "0"],  # flag
        ["5", "2018-04-01 14:00:00", "", "3", "5", 0, 0, "0", "0"],  # no customer
        ["6 6", "2018-04-01 15:00:00", "7", "3", "5", 0, 0, "0", "0"],  # id pattern
        ["7", "2018-04-01 16:00:00", "7", "3", "5", 0, 0, "1", "2", "2018-03-01"],  # known_at
    ]
    source = tmp_path / "tx.csv"
    with source.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*COLUMNS, "KNOWN"])
        writer.writerows([[*good, ""], *[row + [""] * (10 - len(row)) for row in bad]])
    summary = import_history(
        source, tmp_path / "out", build_mapping(SETTINGS, columns=mapping(known_at="KNOWN"))
    )
    assert (summary.rows, summary.imported, summary.rejected) == (8, 1, 7)
    # Beside the history directory, not in it: a backfill of the directory never reads it.
    assert summary.rejects_path == tmp_path / "out.rejects.jsonl"
    rejects = [orjson.loads(x) for x in summary.rejects_path.read_bytes().splitlines()]
    assert [(r["row"], r["field"]) for r in rejects] == [
        (2, "amount"),
        (3, "occurred_at"),
        (4, "event_id"),
        (5, "is_fraud"),
        (6, "user_id"),
        (7, "event_id"),
        (8, "known_at"),
    ]
    assert rejects[2]["reason"] == "duplicate of row 1"
    assert rejects[0]["values"]["TX_AMOUNT"] == "-4"
    assert sum(summary.reasons.values()) == 7


def test_jsonl_line_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    source = tmp_path / "tx.jsonl"
    doc = {"event_id": "e1", "user_id": "u1", "occurred_at": "2026-01-01T10:00:00Z", "amount": 9}
    source.write_bytes(orjson.dumps(doc) + b"\n{not json\n")
    summary = import_history(source, tmp_path / "out", build_mapping(SETTINGS))
    assert (summary.imported, summary.rejected, summary.unflagged) == (1, 1, 1)
    (reject,) = [orjson.loads(x) for x in summary.rejects_path.read_bytes().splitlines()]
    assert reject["row"] == 2 and reject["values"]["line"] == "{not json"
    # Canonical names need no mapping; web is the default source without a terminal.
    raw = read_events_table(summary.events_path).column("raw_json")[0].as_py()
    assert decode_as("purchase", raw).source == "web"


def test_toml_mapping_defaults_and_delay(tmp_path: Path, rows: list[list[object]]) -> None:
    toml = tmp_path / "map.toml"
    lines = ["[columns]", *[f'{k} = "{v}"' for k, v in MAPPING.items()]]
    lines += ["[defaults]", 'country = "FR"', 'currency = "EUR"', "[labels]", "delay_days = 30"]
    toml.write_text("\n".join(lines) + "\n")
    source = _write(tmp_path / "tx.csv", rows)
    summary = import_history(source, tmp_path / "out", build_mapping(SETTINGS, toml_path=toml))
    raw = read_events_table(summary.events_path).column("raw_json")[0].as_py()
    event = decode_as("purchase", raw)
    assert (event.country, event.billing_country, event.currency) == ("FR", "FR", "EUR")
    label = read_table(summary.labels_path).to_pylist()[0]
    assert label["known_at"] - label["occurred_at"] == timedelta(days=30)
    flags = build_mapping(SETTINGS, toml_path=toml, label_delay_days=2, columns=["amount=X"])
    assert flags.label_delay == timedelta(days=2) and flags.columns["amount"] == "X"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", "amount=AMOUNT"], "column 'AMOUNT' (mapped to amount) is not in tx.csv"),
        (["--map", "amout=TX_AMOUNT"], "unknown field 'amout'"),
        (["--map", "amount"], "bad --map 'amount'"),
        (["--drop-amount"], None),
    ],
)
def test_a_bad_mapping_is_one_line_and_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str | None,
) -> None:
    from shopsentry.cli import main

    write_handbook_csv(tmp_path / "tx.csv", customers=5, terminals=5, days=2)
    monkeypatch.chdir(tmp_path)
    base = ["history", "import", "tx.csv", "--out", "out"]
    if args == ["--drop-amount"]:  # every field mapped but the required amount
        args = [a for k, v in MAPPING.items() if k != "amount" for a in ("--map", f"{k}={v}")]
        message = "no column for the required field 'amount' in tx.csv"
    monkeypatch.setattr("sys.argv", ["shopsentry", *base, *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_imports_and_reports_every_row(tmp_path: Path, rows: list[list[object]]) -> None:
    source = _write(tmp_path / "tx.csv", rows)
    args = [a for item in mapping() for a in ("--map", item)]
    result = CliRunner().invoke(
        app, ["history", "import", str(source), "--out", str(tmp_path / "h"), *args]
    )
    assert result.exit_code == 0, result.output
    assert f"{len(rows):,} rows:" in result.output and "imported" in result.output
    assert (tmp_path / "h" / "events.parquet").is_file()
    with pytest.raises(HistoryImportError, match="no file at"):
        import_history(tmp_path / "nope.csv", tmp_path / "h", build_mapping(SETTINGS))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_big_files_stream_in_batches_and_leave_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[list[object]], suffix: str
) -> None:
    import shopsentry.warehouse.history_import as history_import
    import shopsentry.warehouse.tabular as tabular

    monkeypatch.setattr(tabular, "BATCH_ROWS", 7)
    monkeypatch.setattr(history_import, "BATCH_ROWS", 7)
    seen: list[tuple[int, int | None]] = []
    source = _write(tmp_path / f"tx{suffix}", rows)
    summary = import_history(
        source,
        tmp_path / "out",
        build_mapping(SETTINGS, columns=mapping()),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert len(seen) == -(-len(rows) // 7) and seen[-1] == (len(rows), len(rows))
    assert pq.read_metadata(summary.events_path).num_rows == summary.imported
    assert summary.imported + summary.rejected == len(rows)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "events.parquet",
        "labels.parquet",
    ]
