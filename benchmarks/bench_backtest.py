"""Backtesting a draft rule over 30 days of 20,000 users (target: under 10 s).

    .venv/bin/python -m benchmarks.bench_backtest [--users 20000] [--days 30] [--keep DIR]

Setup (not timed): the simulator writes a labelled history; ``hourly_etl --history`` loads
it and builds staging/analytics; ``build_training_set`` builds the point-in-time
``ml_features.training_set`` (what the backtest reads). A ``--keep`` directory is reused
when it already holds the built warehouse.

Timed, in wall-clock and process CPU seconds: ``rules.backtest.backtest`` for three
drafts (a feature rule, a rule with string fields and a list, a score-free rule), each
end to end (query, Arrow → NumPy, compile, evaluate, tally per day). Beside it, in the
same run, a plain ``select count(*)`` over the same join, the floor any backtest pays.
Results go to ``benchmarks/results/bench_backtest.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_S = 10.0
DRAFTS = (
    (
        "has(features.amount_ratio) && features.amount_ratio > 5.0 && features.new_device > 0.5",
        "review",
    ),
    (
        "purchase.payment_method == 'gift_card' && purchase.country != purchase.billing_country"
        " || purchase.card_fingerprint in lists.block.card",
        "block",
    ),
    (
        "purchase.amount > 800.0 && has(features.purchases_1h) && features.purchases_1h >= 2.0",
        "block",
    ),
)


def build(data_dir: Path, users: int, days: float) -> None:
    from shopsentry.config import Settings
    from shopsentry.pipelines.hourly_etl import hourly_etl
    from shopsentry.pipelines.weekly_model_retrain import build_training_set
    from shopsentry.simulator import Simulator, SimulatorConfig, write_history

    settings = Settings(data_dir=data_dir)
    history = data_dir / "history"
    sim = Simulator(
        SimulatorConfig(users=users, start=datetime(2026, 3, 1, tzinfo=UTC),
                        duration_s=days * 86400, events_per_hour=None, seed=7)
    )  # fmt: skip
    write_history(sim, history, fmt="parquet")
    hourly_etl(settings, history=history)
    build_training_set(settings)


def _uptime() -> str:
    """``uptime`` as the shell prints it (the load on a shared machine, for the record)."""
    path = shutil.which("uptime")
    if path is None:
        return ""
    return subprocess.run([path], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    from shopsentry.config import Settings
    from shopsentry.rules.backtest import backtest
    from shopsentry.rules.model import ListEntry
    from shopsentry.warehouse.db import connect

    settings = Settings(data_dir=data_dir)
    if not settings.warehouse_path.exists():
        started = time.perf_counter()
        build(data_dir, args.users, args.days)
        print(f"built the warehouse in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    entries = [ListEntry(list="block", entity="card", value=f"card-{i}") for i in range(1000)]
    runs = []
    with connect(settings.warehouse_path, read_only=True) as conn:
        t0 = time.perf_counter()
        rows = conn.execute(
            "select count(*) from ml_features.training_set t"
            " left join staging.stg_purchases p using (event_id)"
            " left join staging.stg_decisions d using (event_id)"
        ).fetchone()[0]
        floor_s = time.perf_counter() - t0
        for expression, action in DRAFTS:
            wall, cpu = time.perf_counter(), time.process_time()
            report = backtest(conn, expression, action, entries=entries)
            runs.append({
                "expression": expression, "action": action,
                "wall_s": round(time.perf_counter() - wall, 3),
                "cpu_s": round(time.process_time() - cpu, 3),
                "hits": report.total.hits, "days": len(report.days),
            })  # fmt: skip
    result = {
        "command": " ".join(["python", "-m", "benchmarks.bench_backtest", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "nproc": len(os.sched_getaffinity(0)),
            "load_avg": os.getloadavg(),
            "uptime": _uptime(),
            "python": platform.python_version(),
        },
        "users": args.users, "days": args.days, "purchases": rows,
        "join_count_floor_s": round(floor_s, 3), "target_s": TARGET_S, "runs": runs,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_backtest.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# bench_backtest",
        "",
        f"`{result['command']}` on {result['date']}, {result['machine']['cores']} cores "
        f"(`nproc` {result['machine']['nproc']}), load average "
        f"{result['machine']['load_avg'][0]:.2f}",
        "",
        f"`uptime` at the end of the run: `{result['machine']['uptime']}`",
        "",
        f"{rows:,} purchases ({args.users:,} users x {args.days:g} days); the bare join "
        f"`count(*)` takes {floor_s:.2f} s in the same run. Target: under {TARGET_S:.0f} s.",
        "",
        "| draft | action | wall s | CPU s | hits |",
        "|---|---|---|---|---|",
        *[
            f"| `{r['expression']}` | {r['action']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
            f"{r['hits']:,} |"
            for r in runs
        ],
    ]
    (RESULTS / "bench_backtest.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
