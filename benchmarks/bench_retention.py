"""A 90-day retention pass over 30 days x 20,000 users.

Setup (not timed): a fresh warehouse whose RAW holds 30 days of traffic of 20,000
users (purchases, behaviour events and one decision per purchase; ``--events-per-user-day``
each, the same compact JSON the codec writes), dated so that the first 15 days are past
the 90-day hot window and the last 15 are not; the hourly ETL's lake export has run.
Timed: ``run_retention`` — re-export check of the 15 old days, verification against the
lake (file SHA-256, row counts, key checksums), deletion from the warehouse, and the
warm → cold check (nothing is a year old).

    .venv/bin/python -m benchmarks.bench_retention [--users 20000] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from benchmarks.bench_etl import _git_commit

RESULTS = Path(__file__).resolve().parent / "results"


def populate(settings, users: int, days: int, per_user_day: float, first_day: date) -> dict:
    """RAW rows written set-wise by DuckDB (what the loader would have inserted)."""
    from shopsentry.warehouse.db import connect
    from shopsentry.warehouse.loader import ensure_raw_schema

    n = int(users * days * per_user_day)
    span_s = days * 86400
    start = datetime.combine(first_day, datetime.min.time())
    with connect(settings.warehouse_path) as con:
        ensure_raw_schema(con)
        con.execute(
            f"""create temp table ev as
                select i, 'u' || lpad((hash(i) % {users})::varchar, 6, '0') as user_id,
                       ?::timestamp + to_seconds((i * {span_s}::double / {n})::bigint) as ts,
                       (i % 100) < 15 as is_purchase
                from range({n}) t(i)""",
            [start],
        )
        for table, where, kind, extra in (
            ("purchase_events", "is_purchase", "purchase", ',"amount":42.5,"currency":"USD"'),
            ("user_behavior", "not is_purchase", "page_view", ',"page":"/p/1"'),
            ("decisions", "is_purchase", "decision", ',"probability":0.1,"band":"approve"'),
        ):
            prefix = {"purchase_events": "p", "user_behavior": "b", "decisions": "p"}[table]
            con.execute(
                f"""insert into raw.{table}
                    select '{prefix}' || i, '{prefix}' || i, '{kind}', user_id, 'web', ts,
                        ('{{"schema_version":1,"event_id":"{prefix}' || i || '","user_id":"'
                         || user_id || '","occurred_at":"' || strftime(ts, '%Y-%m-%dT%H:%M:%S')
                         || 'Z","event_type":"{kind}"{extra}}}')::json,
                        null, '{table}', (i % 3)::integer, i, ts + interval 5 minute
                    from ev where {where}"""
            )
        counts = {
            t: con.execute(f"select count(*) from raw.{t}").fetchall()[0][0]
            for t in ("purchase_events", "user_behavior", "decisions")
        }
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events-per-user-day", type=float, default=2.0)
    args = parser.parse_args()

    from shopsentry.config import Settings
    from shopsentry.lake.export import export_to_lake
    from shopsentry.lake.retention import run_retention
    from shopsentry.lake.storage import LakeConfig

    root = Path(tempfile.mkdtemp(prefix="shopsentry-bench-retention-"))
    try:
        settings = Settings(data_dir=root / "data")
        today = date(2026, 12, 1)
        first_day = today - timedelta(days=settings.lake.hot_days + args.days // 2)
        mark = time.perf_counter()
        counts = populate(settings, args.users, args.days, args.events_per_user_day, first_day)
        export = export_to_lake(LakeConfig.from_settings(settings))
        setup_s = time.perf_counter() - mark
        load_before = os.getloadavg()[0]
        mark = time.perf_counter()
        result = run_retention(LakeConfig.from_settings(settings), today)
        pass_s = time.perf_counter() - mark
        load_after = os.getloadavg()[0]
        mark = time.perf_counter()
        again = run_retention(LakeConfig.from_settings(settings), today)
        again_s = time.perf_counter() - mark
    finally:
        shutil.rmtree(root, ignore_errors=True)

    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "users": args.users,
        "days": args.days,
        "raw_rows": counts,
        "setup_seconds": round(setup_s, 2),
        "initial_export": export.as_dict(),
        "retention_seconds": round(pass_s, 2),
        "partitions_evicted": result.as_dict()["partitions_evicted"],
        "rows_evicted": result.rows_evicted,
        "kept_hot": len(result.kept_hot),
        "second_pass_seconds": round(again_s, 2),
        "second_pass_rows_evicted": again.rows_evicted,
        "load_average_1m_before_after": [round(load_before, 2), round(load_after, 2)],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_retention.json").write_text(json.dumps(record, indent=2) + "\n")
    md = f"""# bench_retention — a {settings.lake.hot_days}-day retention pass

Command: `.venv/bin/python -m benchmarks.bench_retention --users {args.users} --days {args.days}`
Date: {record["date"]} · commit {record["commit"]} · nproc {record["nproc"]} · {record["platform"]}

Setup (not timed, {setup_s:.1f} s): RAW holding {args.days} days x {args.users:,} users
({sum(counts.values()):,} rows: {counts}), the first {args.days // 2} days past the hot
window; the hourly ETL's lake export run ({export.rows_written:,} rows in
{len(export.written)} partitions).

| measure | value |
|---|---|
| retention pass (re-export check, verify, evict, warm → cold check) | **{pass_s:.1f} s** |
| partitions evicted / rows evicted | {record["partitions_evicted"]} / {result.rows_evicted:,} |
| partitions kept hot (failed verification) | {len(result.kept_hot)} |
| second pass the same day (nothing to move) | {again_s:.1f} s, {again.rows_evicted} rows |
| 1-minute load average before / after (machine shared) | {load_before:.1f} / {load_after:.1f} \
on {record["nproc"]} CPUs |
"""
    (RESULTS / "bench_retention.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
