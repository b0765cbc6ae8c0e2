"""`shopsentry batch` as a user runs it: simulate a history, load it, run the hourly
ETL for a day and the report, and get one clear line (exit 1) for a mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def shopsentry(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("shopsentry"))
    return subprocess.run(
        [exe, "--data-dir", str(data_dir), *args], capture_output=True, text=True, timeout=300
    )


def test_batch_commands_end_to_end(tmp_path: Path) -> None:
    data, history = tmp_path / "data", tmp_path / "history"
    sim = shopsentry(
        data, "simulate", "--days", "2", "--users", "80", "--seed", "9",
        "--start", "2026-11-20", "--out", str(history),
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr

    loaded = shopsentry(data, "batch", "load", "--history", str(history), "--json")
    assert loaded.returncode == 0, loaded.stderr
    first = json.loads(loaded.stdout[loaded.stdout.index("{") :])
    assert first["rows_inserted"]["purchase_events"] > 0
    again = shopsentry(data, "batch", "load", "--history", str(history), "--json")
    assert json.loads(again.stdout[again.stdout.index("{") :])["rows_inserted"] == {}

    etl = shopsentry(data, "batch", "run", "hourly_etl", "--date", "2026-11-20", "--json")
    assert etl.returncode == 0, etl.stderr
    summary = json.loads(etl.stdout[etl.stdout.index("{") :])
    assert summary["interval"].startswith("[2026-11-20T00:00:00+00:00")
    assert summary["interval_summary"]["orders"] > 0

    report = shopsentry(
        data, "batch", "run", "daily_fraud_report", "--date", "2026-11-20", "--json"
    )
    assert report.returncode == 0, report.stderr
    path = Path(json.loads(report.stdout[report.stdout.index("{") :])["path"])
    assert path == data / "reports" / "fraud-report-2026-11-20.html" and path.is_file()


def test_a_mistake_is_one_clear_line(tmp_path: Path) -> None:
    missing = shopsentry(tmp_path / "data", "batch", "load", "--history", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "error: history path" in missing.stderr and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_date = shopsentry(
        tmp_path / "data", "batch", "run", "daily_fraud_report", "--date", "yesterday"
    )
    assert bad_date.returncode == 1 and "bad date 'yesterday'" in bad_date.stderr
