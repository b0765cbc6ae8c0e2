"""The cost of a shadow challenger on the hot path: ``HotPath.process`` over the same
prepared micro-batches with the champion alone and with a challenger scored beside it.

    .venv/bin/python -m benchmarks.bench_challenger [--purchases 60000] [--repeat 3]

The champion is a real model trained on simulator history (bench_detector's
``train_champion``, ≈20 s); the challenger is the same forest with its margin shifted
(the same number and depth of trees, so it costs what a retrained challenger costs),
and flags more, so its reason codes are not computed for free. The traffic is
bench_detector's (simulator purchases plus the behaviour events the features use), cut
into micro-batches of ``detector.batch_max_records`` records. Each run starts from empty
user and entity state (fresh LMDB files) and keeps the worker's state cache between
batches, as a worker does; producing and committing are left out, so the ratio is the
hot path's own (a whole worker pays the same extra on a larger total). Runs alternate
(champion alone, shadow, champion alone, ...) and the best CPU time of each kind is
kept, which a shared machine's load changes least. Results:
``benchmarks/results/bench_challenger.{json,md}``.
"""

from __future__ import annotations

import argparse
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


def one_run(
    work: Path, settings: Any, batches: list[list[Any]], champion: Any, challenger: Any
) -> dict[str, Any]:
    """CPU and wall seconds of one pass over the batches on fresh state."""
    from shopsentry.detection.feature_ops import default_feature_ops
    from shopsentry.detection.hot_path import HotPath, StateCache
    from shopsentry.detection.worker import hot_path_config
    from shopsentry.features.entity_store import LmdbEntityStore
    from shopsentry.features.lmdb_store import LmdbStateStore

    run_dir = Path(tempfile.mkdtemp(dir=work))
    store = LmdbStateStore(run_dir / "state.lmdb")
    entities = LmdbEntityStore(run_dir / "entities.lmdb")
    cache = StateCache()
    pipeline = HotPath(hot_path_config(settings), default_feature_ops(entities), cache=cache)
    purchases = decisions = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for records in batches:
        out = pipeline.process(records, {}, champion, store, None, challenger)
        cache.put(out.state_objects)
        purchases += out.purchases
        decisions += sum(1 for o in out.outputs if o.topic == settings.topics.decisions.name)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    store.close()
    entities.close()
    assert decisions == purchases, "every purchase must be decided"
    return {"cpu_s": cpu, "wall_s": wall, "purchases": purchases}


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
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind (best kept)")
    args = parser.parse_args(argv)

    from shopsentry.config import Settings

    settings = Settings(data_dir="unused")  # defaults: shadow mode, batch_max_records
    load_before = _uptime()
    with tempfile.TemporaryDirectory(prefix="bench-challenger-") as tmp:
        work = Path(tmp)
        champion, challenger, info = load_models(work)
        batches = prepare_batches(settings, args.purchases, settings.detector.batch_max_records)
        runs: dict[str, list[dict[str, Any]]] = {"champion": [], "shadow": []}
        for _ in range(args.repeat):
            runs["champion"].append(one_run(work, settings, batches, champion, None))
            runs["shadow"].append(one_run(work, settings, batches, champion, challenger))
    best = {kind: min(r["cpu_s"] for r in rs) for kind, rs in runs.items()}
    purchases = runs["champion"][0]["purchases"]
    rate = {kind: purchases / seconds for kind, seconds in best.items()}
    cost = 1 - rate["shadow"] / rate["champion"]
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
        "trees": info["trees"],
        "runs": runs,
        "best_cpu_s": best,
        "purchases_per_cpu_s": {k: round(v) for k, v in rate.items()},
        "us_per_purchase": {k: round(1e6 / v, 2) for k, v in rate.items()},
        "shadow_to_champion_throughput": round(rate["shadow"] / rate["champion"], 4),
        "shadow_throughput_cost": round(cost, 4),
        "target_cost": TARGET,
        "within_target": cost <= TARGET,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_challenger.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, RESULTS / "bench_challenger.md")
    print(json.dumps(result, indent=2))
    return 0


def write_markdown(r: dict[str, Any], path: Path) -> None:
    us = r["us_per_purchase"]
    verdict = "within" if r["within_target"] else "over"
    spread = {
        kind: (min(x["cpu_s"] for x in runs), max(x["cpu_s"] for x in runs))
        for kind, runs in r["runs"].items()
    }
    noise = max(hi / lo - 1 for lo, hi in spread.values())
    path.write_text(
        "# bench_challenger\n\n"
        f"`{r['command']}` on {r['date']}, nproc {r['machine']['nproc']}\n\n"
        f"- uptime before: `{r['machine']['uptime_before']}`\n"
        f"- uptime after: `{r['machine']['uptime_after']}`\n\n"
        f"`HotPath.process` over {r['purchases']:,} purchases (plus behaviour events) in "
        f"batches of {r['batch_records']} records, model of {r['trees']} trees; best CPU "
        f"time of {len(r['runs']['champion'])} alternating runs each.\n\n"
        "| hot path | purchases per CPU-second | µs per purchase |\n|---|---|---|\n"
        f"| champion alone | {r['purchases_per_cpu_s']['champion']:,} | {us['champion']} |\n"
        f"| champion + shadow challenger | {r['purchases_per_cpu_s']['shadow']:,} |"
        f" {us['shadow']} |\n\n"
        f"Shadow scoring keeps {r['shadow_to_champion_throughput']:.1%} of the throughput: it "
        f"costs {r['shadow_throughput_cost']:.1%}, {verdict} the {r['target_cost']:.0%} bound.\n\n"
        f"Run-to-run spread of the CPU time: champion alone {spread['champion'][0]:.1f}"
        f"-{spread['champion'][1]:.1f} s, with the shadow challenger {spread['shadow'][0]:.1f}"
        f"-{spread['shadow'][1]:.1f} s (up to {noise:.0%}); a difference smaller than that"
        " is the machine's load, not the challenger.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
