"""How fast the simulator makes traffic.

    .venv/bin/python -m benchmarks.bench_simulator [--users 20000] [--days 30]

Measures, in one process:

- the training history: ``--days`` of natural activity for ``--users`` users, split into
  generation (numpy columns, fraud incidents, sort) and rendering + writing Parquet;
- the design's peak hour: 3,000 events/hour for one hour, generated and rendered (what
  ``shopsentry simulate --rate 3000/h --duration 1h --as-fast-as-possible`` does before
  producing to the log).

Results go to ``benchmarks/results/bench_simulator.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from shopsentry.simulator import Simulator, SimulatorConfig, write_history

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=30.0)
    args = parser.parse_args()
    start = datetime(2026, 2, 1, tzinfo=UTC)

    t0 = time.perf_counter()
    sim = Simulator(
        SimulatorConfig(
            users=args.users,
            start=start,
            duration_s=args.days * 86400,
            events_per_hour=None,
            seed=7,
        )
    )
    stats = sim.stats  # forces generation
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_history(sim, tmp, fmt="parquet")
        size = files.events_path.stat().st_size
    t2 = time.perf_counter()

    t3 = time.perf_counter()
    peak = Simulator(
        SimulatorConfig(users=2000, start=start, duration_s=3600, events_per_hour=3000, seed=7)
    )
    rendered = sum(1 for _ in peak.records())
    t4 = time.perf_counter()

    result = {
        "command": "python -m benchmarks.bench_simulator " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "history": {
            "users": args.users,
            "days": args.days,
            "events": stats["events"],
            "purchases": stats["purchases"],
            "fraud_purchases": stats["fraud_purchases"],
            "generate_s": round(t1 - t0, 2),
            "render_and_write_parquet_s": round(t2 - t1, 2),
            "total_s": round(t2 - t0, 2),
            "events_per_s": round(stats["events"] / (t2 - t0)),
            "parquet_bytes": size,
        },
        "peak_hour_3000_per_h": {"events": rendered, "seconds": round(t4 - t3, 3)},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_simulator.json").write_text(json.dumps(result, indent=2) + "\n")
    h = result["history"]
    md = [
        "# Simulator throughput",
        "",
        f"Command: `{result['command']}` — {result['date']}, nproc {result['nproc']},"
        f" load average {result['load_avg_1m']}, Python {result['python']}"
        " (machine shared with other jobs).",
        "",
        f"History {h['users']:,} users × {h['days']:g} days: {h['events']:,} events"
        f" ({h['purchases']:,} purchases, {h['fraud_purchases']:,} fraud):"
        f" generated in {h['generate_s']} s, rendered and written to Parquet in"
        f" {h['render_and_write_parquet_s']} s (total {h['total_s']} s,"
        f" {h['events_per_s']:,} events/s, {h['parquet_bytes'] / 1e6:.0f} MB).",
        "",
        f"Peak hour (3,000/h for 1 h): {rendered:,} events generated and rendered in"
        f" {result['peak_hour_3000_per_h']['seconds']} s.",
        "",
    ]
    (RESULTS / "bench_simulator.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
