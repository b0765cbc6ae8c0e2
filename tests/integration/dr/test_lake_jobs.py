"""The lake as a user meets it: `batch run hourly_etl` writes it (and a rerun adds
nothing), `batch run retention` empties the warehouse of old days only once the lake
holds them, and the tier views still answer for those days."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopsentry.lake.storage import LakeConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def shopsentry(data: Path, *args: str, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "shopsentry", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    return json.loads(out[out.index("{") :]) if "--json" in args else {}


def test_hourly_etl_writes_the_lake_and_retention_moves_verified_days(tmp_path: Path) -> None:
    from shopsentry.config import Settings
    from shopsentry.lake import attach_tiers
    from shopsentry.warehouse.db import connect

    data, history = tmp_path / "data", tmp_path / "history"
    shopsentry(
        data, "simulate", "--days", "2", "--users", "80", "--seed", "9",
        "--start", "2026-11-20", "--out", str(history),
    )  # fmt: skip
    first = shopsentry(data, "batch", "run", "hourly_etl", "--history", str(history), "--json")
    assert first["lake"]["partitions_written"] >= 2 and first["lake"]["rows_written"] > 0
    again = shopsentry(data, "batch", "run", "hourly_etl", "--json")
    assert again["lake"]["partitions_written"] == 0

    settings = Settings(data_dir=data)
    with connect(settings.warehouse_path, read_only=True) as con:
        purchases = con.execute("select count(*) from raw.purchase_events").fetchall()[0][0]
    # Ten days later with a 5-day hot window, both days leave the warehouse.
    moved = shopsentry(
        data, "batch", "run", "retention", "--date", "2026-12-02", "--json",
        SHOPSENTRY_LAKE__HOT_DAYS="5",
    )  # fmt: skip
    assert moved["kept_hot"] == {} and moved["rows_evicted"] >= purchases
    with connect(settings.warehouse_path, read_only=True) as con:
        assert con.execute("select count(*) from raw.purchase_events").fetchall()[0][0] == 0
        attach_tiers(con, LakeConfig.from_settings(settings))
        tiered = con.execute("select count(*) from tiered_purchase_events").fetchall()[0][0]
        # The marts keep the days: the report over them still answers.
        orders = con.execute("select count(*) from analytics.fct_orders").fetchall()[0][0]
    assert tiered == purchases and orders > 0
    repeat = shopsentry(
        data, "batch", "run", "retention", "--date", "2026-12-02", "--json",
        SHOPSENTRY_LAKE__HOT_DAYS="5",
    )  # fmt: skip
    assert repeat["rows_evicted"] == 0
