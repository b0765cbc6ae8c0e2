from __future__ import annotations

from datetime import date

from shopsentry.config import Settings
from shopsentry.lake.export import export_to_lake
from shopsentry.lake.partitions import list_partitions
from shopsentry.lake.retention import run_retention
from shopsentry.lake.storage import LakeConfig, open_tier
from shopsentry.warehouse.db import connect
from shopsentry.warehouse.loader import raw_counts

# The event set spans 2026-11-20 and 2026-11-21.
AFTER_FIRST_DAY = date(2026, 11, 21)


def with_days(settings: Settings, hot: int, warm: int = 365) -> Settings:
    return settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"hot_days": hot, "warm_days": warm})}
    )


def old_rows(settings: Settings, before: str) -> int:
    with connect(settings.warehouse_path, read_only=True) as con:
        return sum(
            con.execute(f"select count(*) from raw.{t} where occurred_at < '{before}'").fetchall()[
                0
            ][0]
            for t in raw_counts(con)
        )


def test_only_days_past_the_hot_window_leave_and_only_once_in_the_lake(loaded) -> None:
    settings = with_days(loaded, hot=0)
    with connect(settings.warehouse_path, read_only=True) as con:
        total = sum(raw_counts(con).values())
    result = run_retention(LakeConfig.from_settings(settings), today=AFTER_FIRST_DAY)
    assert result.kept_hot == {}
    assert old_rows(settings, "2026-11-21") == 0
    with connect(settings.warehouse_path, read_only=True) as con:
        assert sum(raw_counts(con).values()) == total - result.rows_evicted > 0
    evicted = {
        m.date
        for m in list_partitions(open_tier(LakeConfig.from_settings(settings), "warm"))
        if m.evicted
    }
    assert evicted == {"2026-11-20"}


def test_a_partition_the_lake_cannot_vouch_for_stays_hot(loaded, monkeypatch) -> None:
    settings = with_days(loaded, hot=0)
    export_to_lake(LakeConfig.from_settings(settings))
    storage = open_tier(LakeConfig.from_settings(settings), "warm")
    manifest = [m for m in list_partitions(storage, "purchase_events") if m.date == "2026-11-20"]
    # Re-export cannot repair what it skips as unchanged: corrupt the file it points at.
    import shopsentry.lake.retention as retention

    monkeypatch.setattr(retention, "export_to_lake", lambda *_a, **_k: None)
    storage.put_bytes(manifest[0].file_keys()[0], b"garbage")
    before = old_rows(settings, "2026-11-21")
    result = run_retention(LakeConfig.from_settings(settings), today=AFTER_FIRST_DAY)
    assert "purchase_events/2026-11-20" in result.kept_hot
    with connect(settings.warehouse_path, read_only=True) as con:
        left = con.execute(
            "select count(*) from raw.purchase_events where occurred_at < '2026-11-21'"
        ).fetchall()[0][0]
    assert left > 0 and old_rows(settings, "2026-11-21") <= before


def test_warm_partitions_past_a_year_move_to_cold_intact(loaded) -> None:
    settings = with_days(loaded, hot=0, warm=1)
    result = run_retention(LakeConfig.from_settings(settings), today=date(2026, 11, 22))
    assert result.moved_cold
    warm_days = {
        m.date for m in list_partitions(open_tier(LakeConfig.from_settings(settings), "warm"))
    }
    cold = list_partitions(open_tier(LakeConfig.from_settings(settings), "cold"))
    assert "2026-11-20" not in warm_days and {m.date for m in cold} == {"2026-11-20"}


def test_a_late_row_for_an_evicted_day_is_merged_not_replacing_the_lake_copy(loaded) -> None:
    settings = with_days(loaded, hot=0)
    run_retention(LakeConfig.from_settings(settings), today=AFTER_FIRST_DAY)
    storage = open_tier(LakeConfig.from_settings(settings), "warm")
    before = next(m for m in list_partitions(storage, "purchase_events") if m.date == "2026-11-20")
    with connect(settings.warehouse_path) as con:
        con.execute(
            """insert into raw.purchase_events (_dedupe_key, event_id, occurred_at, _topic,
               _partition, _offset, _loaded_at)
               values ('late-1', 'late-1', '2026-11-20 12:00:00', 'purchase-events', 0, 999,
               current_timestamp::timestamp)"""
        )
    export_to_lake(LakeConfig.from_settings(settings))
    after = next(m for m in list_partitions(storage, "purchase_events") if m.date == "2026-11-20")
    assert after.rows == before.rows + 1
