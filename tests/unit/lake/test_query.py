from __future__ import annotations

from datetime import date

from shopsentry.lake.query import attach_tiers
from shopsentry.lake.retention import run_retention
from shopsentry.lake.storage import LakeConfig
from shopsentry.warehouse.db import connect
from tests.unit.lake.test_retention import with_days


def test_a_range_spanning_warehouse_warm_and_cold_still_answers(loaded) -> None:
    with connect(loaded.warehouse_path, read_only=True) as con:
        before = con.execute(
            "select count(*), count(distinct event_id) from raw.purchase_events"
        ).fetchall()
    # Day one goes cold, day two warm, nothing of either stays in the warehouse.
    run_retention(
        LakeConfig.from_settings(with_days(loaded, hot=0, warm=1)), today=date(2026, 11, 22)
    )
    with connect(loaded.warehouse_path, read_only=True) as con:
        assert con.execute("select count(*) from raw.purchase_events").fetchall()[0][0] == 0
        attach_tiers(con, LakeConfig.from_settings(loaded))
        after = con.execute(
            "select count(*), count(distinct event_id) from tiered_purchase_events"
            " where occurred_at >= '2026-11-20' and occurred_at < '2026-11-22'"
        ).fetchall()
    assert after == before
