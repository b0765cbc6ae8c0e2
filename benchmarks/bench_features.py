"""Feature code on the hot path and offline, on simulated traffic.

    .venv/bin/python -m benchmarks.bench_features [--users 2000] [--days 7] [--cpu 0]

What is measured (one process, pinned to one CPU when the OS allows):

- hot path per purchase: ``feature_vector`` then ``observe_purchase`` on warmed per-user
  states (the detector's sequence), and ``observe_behavior`` per behaviour event; the
  state round trip ``to_bytes`` + ``from_bytes`` per user; all in microseconds, the mean
  over every event of the history, best of three passes;
- state sizes in bytes (mean and max over users);
- offline: ``offline_features`` over the history's canonical events table (the fast
  table path) and over event models, in events per second.

Results go to ``benchmarks/results/bench_features.{json,md}``.
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

from shopsentry.events.simulator import Simulator, SimulatorConfig, write_history
from shopsentry.features import (
    BehaviorState,
    PurchaseState,
    events_from_table,
    feature_vector,
    observe_behavior,
    observe_purchase,
    offline_features,
)

RESULTS = Path(__file__).resolve().parent / "results"


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (-1: do not pin)")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    sim = Simulator(
        SimulatorConfig(
            users=args.users,
            start=datetime(2026, 3, 1, tzinfo=UTC),
            duration_s=args.days * 86400,
            events_per_hour=None,
            seed=1,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = write_history(sim, tmp, fmt="parquet")
        table_events = events_from_table(files.events_path)
        events = list(table_events)
        purchases = [e for e in events if e.event_type == "purchase"]
        behaviour = [e for e in events if e.event_type != "purchase"]

        # Warm states with the whole history, then time passes over it.
        pstates: dict[str, PurchaseState] = {}
        bstates: dict[str, BehaviorState] = {}
        for e in events:
            if e.event_type == "purchase":
                observe_purchase(pstates.setdefault(e.user_id, PurchaseState()), e)
            else:
                observe_behavior(bstates.setdefault(e.user_id, BehaviorState()), e)
        empty = BehaviorState()
        snapshot_p = {u: s.to_bytes() for u, s in pstates.items()}
        snapshot_b = {u: s.to_bytes() for u, s in bstates.items()}

        def vector_pass() -> None:
            for e in purchases:
                feature_vector(pstates[e.user_id], bstates.get(e.user_id, empty), e)

        def observe_p_pass() -> None:
            fresh = {u: PurchaseState.from_bytes(b) for u, b in snapshot_p.items()}
            t = time.perf_counter()
            for e in purchases:
                observe_purchase(fresh[e.user_id], e)
            observe_p_pass.elapsed = time.perf_counter() - t  # type: ignore[attr-defined]

        def observe_b_pass() -> None:
            fresh = {u: BehaviorState.from_bytes(b) for u, b in snapshot_b.items()}
            t = time.perf_counter()
            for e in behaviour:
                observe_behavior(fresh[e.user_id], e)
            observe_b_pass.elapsed = time.perf_counter() - t  # type: ignore[attr-defined]

        def roundtrip_p() -> None:
            for s in pstates.values():
                PurchaseState.from_bytes(s.to_bytes())

        def roundtrip_b() -> None:
            for s in bstates.values():
                BehaviorState.from_bytes(s.to_bytes())

        vector_us = _best(vector_pass) / len(purchases) * 1e6
        observe_p = []
        observe_b = []
        for _ in range(3):
            observe_p_pass()
            observe_p.append(observe_p_pass.elapsed)  # type: ignore[attr-defined]
            observe_b_pass()
            observe_b.append(observe_b_pass.elapsed)  # type: ignore[attr-defined]
        observe_p_us = min(observe_p) / len(purchases) * 1e6
        observe_b_us = min(observe_b) / len(behaviour) * 1e6
        rt_p_us = _best(roundtrip_p) / len(pstates) * 1e6
        rt_b_us = _best(roundtrip_b) / len(bstates) * 1e6
        p_sizes = [len(b) for b in snapshot_p.values()]
        b_sizes = [len(b) for b in snapshot_b.values()]

        t = time.perf_counter()
        frame = offline_features(table_events)
        table_s = time.perf_counter() - t
        t = time.perf_counter()
        offline_features(iter(events))
        models_s = time.perf_counter() - t
        t = time.perf_counter()
        n_decoded = sum(1 for _ in events_from_table(files.events_path))
        decode_s = time.perf_counter() - t

    result = {
        "command": "python -m benchmarks.bench_features " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "pinned_cpu": args.cpu,
        "python": platform.python_version(),
        "history": {
            "users": args.users,
            "days": args.days,
            "events": len(events),
            "purchases": len(purchases),
        },
        "hot_path_us": {
            "feature_vector": round(vector_us, 2),
            "observe_purchase": round(observe_p_us, 2),
            "feature_vector_plus_observe_purchase": round(vector_us + observe_p_us, 2),
            "observe_behavior": round(observe_b_us, 2),
            "purchase_state_bytes_round_trip": round(rt_p_us, 2),
            "behavior_state_bytes_round_trip": round(rt_b_us, 2),
        },
        "state_bytes": {
            "purchase_mean": round(sum(p_sizes) / len(p_sizes)),
            "purchase_max": max(p_sizes),
            "behavior_mean": round(sum(b_sizes) / len(b_sizes)),
            "behavior_max": max(b_sizes),
        },
        "offline_events_per_s": {
            "table_path": round(len(events) / table_s),
            "model_path_excluding_decode": round(len(events) / models_s),
            "decode_table_to_models": round(n_decoded / decode_s),
        },
        "offline_rows": len(frame),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_features.json").write_text(json.dumps(result, indent=2) + "\n")
    hot = result["hot_path_us"]
    md = [
        "# Feature code: hot path and offline",
        "",
        f"Command: `{result['command']}` — {result['date']}, nproc {result['nproc']},"
        f" pinned to CPU {args.cpu}, Python {result['python']}.",
        f"History: {args.users} users × {args.days:g} days = {len(events):,} events"
        f" ({len(purchases):,} purchases).",
        "",
        "| hot path (mean per event) | µs |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in hot.items()),
        "",
        "State bytes: purchase mean {purchase_mean} / max {purchase_max},"
        " behaviour mean {behavior_mean} / max {behavior_max}.".format(**result["state_bytes"]),
        "",
        "| offline | events/s |",
        "|---|---|",
        *(f"| {k} | {v:,} |" for k, v in result["offline_events_per_s"].items()),
        "",
    ]
    (RESULTS / "bench_features.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
