"""Feature code on the hot path and offline, on simulated traffic.

    .venv/bin/python -m benchmarks.bench_features [--users 5000] [--days 14] [--cpu -1]

What is measured (one process, one thread; ``--cpu N`` pins it to CPU N):

- hot path: the history replayed event by event from empty states, as the detector
  runs it (``feature_vector`` from the state before a purchase, then
  ``observe_purchase``; ``observe_behavior`` per behaviour event); three replays (all,
  observes only, behaviour only) split the cost per call; plus the state round trip
  ``to_bytes`` + ``from_bytes`` per user; mean microseconds per event, best of seven
  replays, in process CPU time (the machine is shared: wall time would count other
  jobs' turns on the core);
- state sizes in bytes (mean and max over users);
- offline: ``offline_features`` over the history's canonical events table (the fast
  table path, measured first), decoding the table to models, and ``offline_features``
  over the decoded models, in events per second.

The decoded models are frozen out of the cyclic GC (``gc.freeze``) before the hot-path
passes: a detector holds a batch, not a month of events, and without it a full GC over
millions of objects is what gets measured.

Results go to ``benchmarks/results/bench_features.{json,md}`` (the latest run) and
``benchmarks/results/bench_features_history.jsonl`` (every run, with its ``--label`` and
load average, so a before/after pair stays side by side).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from shopsentry.features import (
    BehaviorState,
    PurchaseState,
    events_from_table,
    feature_vector,
    observe_behavior,
    observe_purchase,
    offline_features,
)
from shopsentry.simulator import Simulator, SimulatorConfig, write_history

RESULTS = Path(__file__).resolve().parent / "results"


def _best(fn, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def _dedupe_us(events: list) -> float:  # type: ignore[type-arg]
    """The event_id deduplication (``detection/dedupe.py``) per event, as the detector
    runs it: batches of 500, the users' recent ids kept in the worker's cache between
    batches (a cache miss reads the store: a dict here)."""
    from shopsentry.bus.base import TopicPartition
    from shopsentry.detection.dedupe import RecentEventIds
    from shopsentry.detection.hot_path import StateCache
    from shopsentry.features.state_store import SEEN_NS

    class DictStore:
        def __init__(self) -> None:
            self.seen: dict[str, bytes] = {}

        def load(self, namespace: str, keys: list[str]) -> dict[str, bytes]:
            return {k: self.seen[k] for k in keys if k in self.seen}

    pt, bt = TopicPartition("purchase-events", 0), TopicPartition("user-behavior", 0)
    batches = [
        {
            pt: [(None, e) for e in events[i : i + 500] if e.event_type == "purchase"],
            bt: [(None, e) for e in events[i : i + 500] if e.event_type != "purchase"],
        }
        for i in range(0, len(events), 500)
    ]

    def run() -> None:
        recent, store, cache = RecentEventIds(pt.topic, 32), DictStore(), StateCache()
        for batch in batches:
            result = recent.drop_duplicates(batch, store, cache)  # type: ignore[arg-type]
            store.seen.update(result.changed)
            cache.put({SEEN_NS: result.states})

    return _best(run) / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument(
        "--cpu", type=int, default=-1, help="CPU to pin to (default -1: do not pin)"
    )
    parser.add_argument(
        "--label", default="", help="what this run measures (kept in the history file)"
    )
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    load_at_start = [round(x, 2) for x in os.getloadavg()]

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
        del sim
        table_events = events_from_table(files.events_path)
        # Offline table path first, before millions of models fill the heap.
        t = time.perf_counter()
        frame = offline_features(table_events)
        table_s = time.perf_counter() - t
        t = time.perf_counter()
        events = list(table_events)
        decode_s = time.perf_counter() - t
        # The detector never holds millions of events: keep the cyclic GC from walking them.
        gc.collect()
        gc.freeze()
        purchases = [e for e in events if e.event_type == "purchase"]
        behaviour = [e for e in events if e.event_type != "purchase"]

        # The detector's sequence, event by event from empty states: features of a purchase
        # from the state before it, then observe. Three replays split the cost: everything,
        # observes only, behaviour observes only.
        def replay(vectors: bool, purchase_observes: bool) -> None:
            pstates: dict[str, PurchaseState] = {}
            bstates: dict[str, BehaviorState] = {}
            empty = BehaviorState()
            for e in events:
                if e.event_type == "purchase":
                    if not purchase_observes:
                        continue
                    ps = pstates.get(e.user_id)
                    if ps is None:
                        ps = pstates[e.user_id] = PurchaseState()
                    if vectors:
                        feature_vector(ps, bstates.get(e.user_id, empty), e)
                    observe_purchase(ps, e)
                else:
                    bs = bstates.get(e.user_id)
                    if bs is None:
                        bs = bstates[e.user_id] = BehaviorState()
                    observe_behavior(bs, e)
            replay.states = (pstates, bstates)  # type: ignore[attr-defined]

        full = _best(lambda: replay(True, True))
        observes = _best(lambda: replay(False, True))
        behaviour_only = _best(lambda: replay(False, False))
        vector_us = (full - observes) / len(purchases) * 1e6
        observe_p_us = (observes - behaviour_only) / len(purchases) * 1e6
        observe_b_us = behaviour_only / len(behaviour) * 1e6
        replay(False, True)
        pstates, bstates = replay.states  # type: ignore[attr-defined]
        snapshot_p = {u: s.to_bytes() for u, s in pstates.items()}
        snapshot_b = {u: s.to_bytes() for u, s in bstates.items()}

        def roundtrip_p() -> None:
            for s in pstates.values():
                PurchaseState.from_bytes(s.to_bytes())

        def roundtrip_b() -> None:
            for s in bstates.values():
                BehaviorState.from_bytes(s.to_bytes())

        rt_p_us = _best(roundtrip_p) / len(pstates) * 1e6
        dedupe_us = _dedupe_us(events)
        rt_b_us = _best(roundtrip_b) / len(bstates) * 1e6
        p_sizes = [len(b) for b in snapshot_p.values()]
        b_sizes = [len(b) for b in snapshot_b.values()]

        t = time.perf_counter()
        offline_features(iter(events))
        models_s = time.perf_counter() - t
        n_decoded = len(events)

    result = {
        "command": "python -m benchmarks.bench_features " + " ".join(sys.argv[1:]),
        "label": args.label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
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
            "dedupe_event_id_per_event": round(dedupe_us, 2),
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
    with (RESULTS / "bench_features_history.jsonl").open("a") as fh:  # every run, before/after
        fh.write(json.dumps(result) + "\n")
    hot = result["hot_path_us"]
    md = [
        "# Feature code: hot path and offline",
        "",
        f"Command: `{result['command']}` — {result['date']}, nproc {result['nproc']},"
        f" {'not pinned' if args.cpu < 0 else f'pinned to CPU {args.cpu}'},"
        f" Python {result['python']}, load average {load_at_start} at start"
        f" / {result['load_average_at_end']} at end."
        " Hot path in process CPU time, offline in wall time.",
        *([f"Run: {args.label}."] if args.label else []),
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
