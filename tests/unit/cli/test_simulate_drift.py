"""`shopsentry simulate --drift`: drifted history files, one-line errors for a bad drift."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.unit.cli.test_cli_edges import _isolated, run_main

__all__ = ["_isolated"]  # the edges' autouse fixture: no SHOPSENTRY_* leaks in


def _amounts(out: Path, after: str) -> tuple[float, float]:
    events = pq.read_table(out / "events.parquet").to_pandas()
    purchases = events[events.event_type == "purchase"]
    amounts = purchases.raw_json.str.extract(r'"amount":([0-9.]+)')[0].astype(float)
    late = purchases.occurred_at >= after
    return float(amounts[~late].median()), float(amounts[late].median())


def test_an_amount_drift_triples_amounts_from_its_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["simulate", "--days", "2", "--users", "300", "--seed", "3", "--start", "2026-01-01"]
    code, _ = run_main([*common, "--out", str(tmp_path / "plain")], capsys)
    assert code == 0
    drift = ["--drift", "amount", "--drift-from", "2026-01-02", "--drift-factor", "3"]
    code, _ = run_main([*common, "--out", str(tmp_path / "drifted"), *drift], capsys)
    assert code == 0
    before_plain, after_plain = _amounts(tmp_path / "plain", "2026-01-02")
    before, after = _amounts(tmp_path / "drifted", "2026-01-02")
    assert before == before_plain
    assert after == pytest.approx(3 * after_plain, rel=0.02)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--drift", "amount"], "--drift needs --drift-from"),
        (["--drift", "currency", "--drift-from", "2026-01-02"], "unknown drift kind 'currency'"),
        (["--drift-from", "2026-01-02"], "--drift-from and --drift-factor need --drift"),
        (["--drift", "new_device", "--drift-from", "2026-01-02", "--drift-factor", "2"],
         "does not fit new_device"),
    ],
)  # fmt: skip
def test_a_bad_drift_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out = run_main(
        ["simulate", "--days", "1", "--users", "50", "--out", str(tmp_path / "x"), *args], capsys
    )
    assert code == 1 and message in out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2
