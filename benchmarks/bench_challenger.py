"""The cost of a shadow challenger on the hot path: ``HotPath.process`` over the same
prepared micro-batches with the champion alone and with a challenger scored beside it.

    .venv/bin/python -m benchmarks.bench_challenger [--purchases 60000] [--repeat 2]
        [--block-batches 8]

The champion is a real model trained on simulator history (bench_detector's
``train_champion``, ≈20 s); the challenger is the same forest with its margin shifted
(the same number and depth of trees, so it costs what a retrained challenger costs),
and flags more, so its reason codes are not computed for free. The traffic is
bench_detector's (simulator purchases plus the behaviour events the features use), cut
into micro-batches of ``detector.batch_max_records`` records. Producing and committing
are left out, so the ratio is the hot path's own (a whole worker pays the same extra on
a larger total).

**Paired, interleaved.** On a shared machine the load moves by more than the effect
between two 30-second passes (an earlier version of this benchmark, whole passes
alternated, saw a 33% run-to-run spread at load 9). So each pass runs two hot paths
side by side, each on its own fresh user and entity state (LMDB files) and state cache,
as a worker keeps them: the champion alone and the champion with the shadow
challenger. They take the batches a block (``--block-batches``) at a time, the two
kinds one after the other on the same block (order swapped every block), so each pair
of CPU times is measured within about a second of the same load. The result is the
ratio of the kinds' summed CPU times (the throughput ratio) with a 95% bootstrap
interval over the pairs, and the per-pair ratios' median and quartiles; the bound is
met when the whole interval is, unmet when none of it is, and open otherwise.
A throwaway run of each kind first takes the one-time costs. Python's full garbage
collections (about 0.35 s each here, over both hot paths' heap together, twice a
worker's) would otherwise fall into whichever kind happens to run, one block in two:
the collector is off inside a timed block and collects after it, untimed (its time
is reported beside).
Results: ``benchmarks/results/bench_challenger.{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_detector import Traffic, train_champion

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.15  # the bound: shadow scoring may cost at most 15% of throughput


def prepare_batches(settings: Any, purchases: int, batch: int) -> list[list[Any]]:
    """Records as the log would hand them over, ``batch`` at a time."""
    from shopsentry.bus.base import Record

    pt, bt = settings.topics.purchase_events.name, settings.topics.user_behavior.name
    traffic = Traffic()
    offsets = {pt: 0, bt: 0}
    records: list[Any] = []
    done = 0
    now_ms = int(time.time() * 1000)
    while done < purchases:
        is_purchase, key, value = traffic.next()
        topic = pt if is_purchase else bt
        records.append(Record(topic, 0, offsets[topic], now_ms, key, value))
        offsets[topic] += 1
        done += is_purchase
    return [records[i : i + batch] for i in range(0, len(records), batch)]


class Lane:
    """One hot path on its own fresh state: the champion alone, or with the challenger."""

    def __init__(self, work: Path, settings: Any, champion: Any, challenger: Any) -> None:
        from shopsentry.detection.feature_ops import default_feature_ops
        from shopsentry.detection.hot_path import HotPath, StateCache
        from shopsentry.detection.worker import hot_path_config
        from shopsentry.features.entity_store import LmdbEntityStore
        from shopsentry.features.lmdb_store import LmdbStateStore

        run_dir = Path(tempfile.mkdtemp(dir=work))
        self.store = LmdbStateStore(run_dir / "state.lmdb")
        self.entities = LmdbEntityStore(run_dir / "entities.lmdb")
        self.cache = StateCache()
        self.pipeline = HotPath(
            hot_path_config(settings.topics, settings.detector),
            default_feature_ops(self.entities),
            cache=self.cache,
        )
        self.champion, self.challenger = champion, challenger
        self.decisions_topic = settings.topics.decisions.name
        self.purchases = self.decisions = 0

    def run(self, batches: list[list[Any]]) -> float:
        """CPU seconds to process ``batches``."""
        cpu0 = time.process_time()
        for records in batches:
            out = self.pipeline.process(
                records, {}, self.champion, self.store, None, self.challenger
            )
            self.cache.put(out.state_objects)
            self.purchases += out.purchases
            self.decisions += sum(1 for o in out.outputs if o.topic == self.decisions_topic)
        return time.process_time() - cpu0

    def close(self) -> None:
        self.store.close()
        self.entities.close()
        assert self.decisions == self.purchases, "every purchase must be decided"


def paired_pass(
    work: Path,
    settings: Any,
    batches: list[list[Any]],
    champion: Any,
    challenger: Any,
    block: int,
) -> dict[str, Any]:
    """One pass of both kinds over the batches, block by block, order swapped each block:
    the CPU seconds of each kind per block. The garbage collector runs after each run of
    a block, untimed (``gc_cpu_s``), never inside one."""
    lanes = {
        "champion": Lane(work, settings, champion, None),
        "shadow": Lane(work, settings, champion, challenger),
    }
    cpu: dict[str, list[float]] = {"champion": [], "shadow": []}
    collecting = 0.0
    wall0 = time.perf_counter()
    gc.disable()
    try:
        for i, start in enumerate(range(0, len(batches), block)):
            chunk = batches[start : start + block]
            for kind in ("champion", "shadow") if i % 2 == 0 else ("shadow", "champion"):
                cpu[kind].append(lanes[kind].run(chunk))
                gc0 = time.process_time()
                gc.collect()
                collecting += time.process_time() - gc0
    finally:
        gc.enable()
    wall = time.perf_counter() - wall0
    for lane in lanes.values():
        lane.close()
    return {
        "purchases": lanes["champion"].purchases,
        "wall_s": wall,
        "cpu_s": {kind: sum(v) for kind, v in cpu.items()},
        "gc_cpu_s": collecting,
        "block_cpu_s": cpu,
    }


def warm_up(
    work: Path, settings: Any, batches: list[list[Any]], champion: Any, challenger: Any
) -> None:
    """A throwaway run of each kind: one-time costs (lazy imports, first allocations)
    would otherwise fall on whichever kind runs the first block."""
    for shadow in (None, challenger):
        lane = Lane(work, settings, champion, shadow)
        lane.run(batches)
        lane.close()


def paired_ratio(champion: list[float], shadow: list[float], seed: int = 0) -> dict[str, Any]:
    """The shadow's throughput relative to the champion alone (summed CPU of the
    champion over the shadow's) with a 95% bootstrap interval over the pairs, and the
    per-pair ratios' quartiles."""
    import numpy as np

    a, b = np.asarray(champion), np.asarray(shadow)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, a.size, size=(5000, a.size))
    boot = a[picks].sum(axis=1) / b[picks].sum(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    q1, median, q3 = np.percentile(a / b, [25, 50, 75])
    return {
        "pairs": int(a.size),
        "throughput_ratio": float(a.sum() / b.sum()),
        "ci95": [float(low), float(high)],
        "pair_ratio_quartiles": [float(q1), float(median), float(q3)],
    }


def load_models(work: Path) -> tuple[Any, Any, dict[str, Any]]:
    from shopsentry.models.scorer import build_scorer
    from shopsentry.models.training import fold_calibration

    info = train_champion(work)
    raw = info["model_path"].read_bytes()
    shifted = fold_calibration(raw, 1.0, 1.0)
    cache = work / "compiled"
    champion = build_scorer(raw, version="1", cache_dir=cache)
    challenger = build_scorer(shifted, version="2", cache_dir=cache)
    info["challenger_sha256"] = hashlib.sha256(shifted).hexdigest()
    return champion, challenger, info


def _uptime() -> str:
    try:
        done = subprocess.run(["uptime"], capture_output=True, text=True, check=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average {os.getloadavg()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=2, help="paired passes")
    parser.add_argument(
        "--block-batches", type=int, default=8, help="batches per paired block (~1 s)"
    )
    args = parser.parse_args(argv)

    from shopsentry.config import Settings

    settings = Settings(data_dir="unused")  # defaults: shadow mode, batch_max_records
    load_before = _uptime()
    with tempfile.TemporaryDirectory(prefix="bench-challenger-") as tmp:
        work = Path(tmp)
        champion, challenger, info = load_models(work)
        batches = prepare_batches(settings, args.purchases, settings.detector.batch_max_records)
        warm_up(work, settings, batches[: args.block_batches], champion, challenger)
        passes = [
            paired_pass(work, settings, batches, champion, challenger, args.block_batches)
            for _ in range(args.repeat)
        ]
    blocks = {
        kind: [x for p in passes for x in p["block_cpu_s"][kind]] for kind in ("champion", "shadow")
    }
    paired = paired_ratio(blocks["champion"], blocks["shadow"])
    purchases = passes[0]["purchases"]
    total = {kind: sum(blocks[kind]) for kind in blocks}
    rate = {kind: purchases * len(passes) / seconds for kind, seconds in total.items()}
    cost, (low, high) = 1 - paired["throughput_ratio"], paired["ci95"]
    result = {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.bench_challenger", *sys.argv[1:]]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "uptime_before": load_before,
            "uptime_after": _uptime(),
            "python": platform.python_version(),
        },
        "purchases": purchases,
        "batch_records": settings.detector.batch_max_records,
        "block_batches": args.block_batches,
        "trees": info["trees"],
        "passes": [{k: v for k, v in p.items() if k != "block_cpu_s"} for p in passes],
        "block_cpu_s": blocks,
        "cpu_s": total,
        "purchases_per_cpu_s": {k: round(v) for k, v in rate.items()},
        "us_per_purchase": {k: round(1e6 / v, 2) for k, v in rate.items()},
        "paired": paired,
        "shadow_to_champion_throughput": round(paired["throughput_ratio"], 4),
        "shadow_throughput_cost": round(cost, 4),
        "shadow_throughput_cost_ci95": [round(1 - high, 4), round(1 - low, 4)],
        "target_cost": TARGET,
        "within_target": 1 - low <= TARGET,
        "over_target": 1 - high > TARGET,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_challenger.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, RESULTS / "bench_challenger.md")
    print(json.dumps(result, indent=2))
    return 0


def write_markdown(r: dict[str, Any], path: Path) -> None:
    us, paired = r["us_per_purchase"], r["paired"]
    low, high = r["shadow_throughput_cost_ci95"]
    if r["within_target"]:
        verdict = f"within the {r['target_cost']:.0%} bound (the whole interval is)"
    elif r["over_target"]:
        verdict = f"over the {r['target_cost']:.0%} bound (the whole interval is)"
    else:
        verdict = f"not settled against the {r['target_cost']:.0%} bound (the interval spans it)"
    q1, median, q3 = paired["pair_ratio_quartiles"]
    passes = ", ".join(
        f"{p['cpu_s']['champion']:.1f} s alone vs {p['cpu_s']['shadow']:.1f} s with the shadow"
        for p in r["passes"]
    )
    collected = ", ".join(f"{p['gc_cpu_s']:.1f} s" for p in r["passes"])
    path.write_text(
        "# bench_challenger\n\n"
        f"`{r['command']}` on {r['date']}, nproc {r['machine']['nproc']}\n\n"
        f"- uptime before: `{r['machine']['uptime_before']}`\n"
        f"- uptime after: `{r['machine']['uptime_after']}`\n\n"
        f"`HotPath.process` over {r['purchases']:,} purchases (plus behaviour events) in "
        f"batches of {r['batch_records']} records, model of {r['trees']} trees; "
        f"{len(r['passes'])} pass(es), each running both kinds on their own state block by "
        f"block ({r['block_batches']} batches a block, order swapped each block): "
        f"{paired['pairs']} pairs of CPU times measured within a second of each other.\n\n"
        "| hot path | purchases per CPU-second | µs per purchase |\n|---|---|---|\n"
        f"| champion alone | {r['purchases_per_cpu_s']['champion']:,} | {us['champion']} |\n"
        f"| champion + shadow challenger | {r['purchases_per_cpu_s']['shadow']:,} |"
        f" {us['shadow']} |\n\n"
        f"Shadow scoring keeps {r['shadow_to_champion_throughput']:.1%} of the throughput: it "
        f"costs {r['shadow_throughput_cost']:.1%} (95% bootstrap interval over the pairs "
        f"{low:.1%} to {high:.1%}), {verdict}.\n\n"
        f"Per pair, the shadow keeps {median:.1%} of the throughput (median; quartiles "
        f"{q1:.1%}-{q3:.1%}). Summed per pass: {passes}; the garbage collector's, between "
        f"blocks and untimed: {collected}.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
