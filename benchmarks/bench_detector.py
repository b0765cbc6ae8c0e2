"""The project's main benchmark: the whole hot path (decode + validate + features + score
+ produce + state + commit), on the embedded log and on a real Kafka node.

    PYTHONPATH=$PWD/src .venv/bin/python -m benchmarks.bench_detector \
        --purchases 50000 --baseline 7c320d4 --before <branch point>

Every figure that matters is a ratio measured inside one run, because the machine (2
shared cores) moves absolute figures by 2-3x from one hour to the next:

1. **One worker against the floor**, per backend: a backlog (purchases plus the
   behaviour events the features use) is drained under a fresh group by one worker in
   one process (``runner.build_worker`` + ``Worker.run``, see ``detector_drain.py``), then
   the same records by a bare consume → produce loop (Kafka: plain confluent-kafka with
   acks=all and idempotence; embedded log: its own consumer and producer), one output per
   purchase, flush per batch. Reported: purchases/s over the busy span, whole-process CPU
   seconds per 100,000 purchases, and each as a share of the floor. Also in the same
   run: the same code without the entity store (what the entity lookups cost) and with
   50 active rules + 100,000 list entries (``bench_rules``' workload). With
   ``--state-backends lmdb,redis`` (the default) today's code also runs on Redis state
   (a ``redis-server`` on loopback started here, no persistence), with and without the
   entity store.
2. ``--baseline REV``: the same measurement, with its own floor, on the code of another
   commit (checked out in a temporary ``git worktree``, its own ``PYTHONPATH`` and its own
   benchmark's model and traffic), e.g. the commit the README's earlier figures came from.
3. **A steady low rate** (``--low-rate``, 1,000 purchases/s): one supervised worker fed by
   a paced producer (flushing every 5 ms); end-to-end p50/p99 (log timestamp → decision
   durable) and the worker's whole-process CPU per purchase over the paced window, on each
   state backend; beside them, the latency floor at the same rate: the same producer and
   traffic into a bare consume → produce loop that batches like the stream runtime
   (``latency_floor.py``), what any consumer of that log pays there.
   ``--before REV`` runs it on that commit's ``src`` too, in A, B, B, A order.
4. ``--sweep``: the earlier runs' sections (1 and 2 supervised workers, latency against
   offered load with 2 workers); ``--profile``: pyinstrument over one in-process worker.

Results: ``benchmarks/results/bench_detector.{json,md}`` (the command, commit, ``nproc``,
``uptime`` at start and end, load before each measurement). Never a timed assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.detector_report import HISTORY, plot, ratios, summary_of, write_markdown
from benchmarks.detector_workload import (  # noqa: F401  (the drain child reads them here)
    RESULTS,
    ROOT,
    Traffic,
    kafka_node,
    latency_at,
    profile,
    promote,
    redis_server,
    run_settings,
    throughput,
    train_champion,
    write_backlog,
)

# -- the run anyone can repeat: ratios to the floor, before/after, rules, low rate -------
PY = sys.executable
DRAIN = Path(__file__).resolve().parent / "detector_drain.py"


def child(
    tree: Path, spec: dict[str, Any], work: Path, bench_tree: Path | None = None
) -> dict[str, Any]:
    """One :mod:`benchmarks.detector_drain` measurement in a fresh process on ``tree``'s
    code (its ``src`` first on the path) and ``bench_tree``'s ``benchmarks`` package
    (default: the same tree's)."""
    import subprocess

    name = uuid.uuid4().hex[:8]
    spec_path, out = work / f"spec-{name}.json", work / f"out-{name}.json"
    spec_path.write_text(json.dumps({**spec, "out": str(out)}, default=str))
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}:{bench_tree or tree}"}
    subprocess.run([PY, str(DRAIN), str(spec_path)], env=env, check=True, cwd=tree)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def ratio_run(args: argparse.Namespace, work: Path, data: dict[str, Any]) -> None:
    """Per backend, one worker, drained backlog: today's code (also without the entity
    store and with 50 rules + 100,000 list entries) and the floor over the same records;
    the baseline commit and its own floor (over its own tree's traffic) beside them."""
    trees = {"today": ROOT}
    if args.baseline_tree:
        trees["baseline"] = Path(args.baseline_tree).resolve()
    champions = {}
    for label, tree in trees.items():
        print(f"training the champion ({label}) …", flush=True)
        trained = child(tree, {"work": str(work / label), "train_only": True}, work)
        champions[label] = trained["champion"]
        data.setdefault("models", {})[label] = trained["model"]
    node = None
    redis = redis_server(work / "redis") if "redis" in args.state_backends.split(",") else None
    # The [state] section of each state backend's runs (None: the default, LMDB).
    states: dict[str, dict[str, Any] | None] = {"lmdb": None}
    if redis is not None:
        states["redis"] = {"backend": "redis", "redis_url": redis.url}
    try:
        for backend in args.backends.split(","):
            bootstrap = None
            if backend == "kafka":
                bootstrap, node = kafka_node(args, work / "kafka")
                if bootstrap is None:
                    continue
            runs = [(label, tree, "lmdb") for label, tree in trees.items()]
            runs += [("today", ROOT, state) for state in states if state != "lmdb"]
            for label, tree, state in runs:
                kinds = ["shopsentry", "floor"]
                if label == "today":
                    kinds += ["shopsentry_no_entities"]
                    kinds += ["shopsentry_rules"] if state == "lmdb" else []
                spec = {
                    "work": str(work / label),
                    "backend": backend,
                    "bootstrap": bootstrap,
                    "purchases": args.purchases,
                    "kinds": kinds,
                    "champion": champions[label],
                    "rules": 50,
                    "entries": 100_000,
                    "state": states[state],
                }
                load = list(os.getloadavg())
                result = child(tree, spec, work)
                result["ratios"] = ratios(result)
                result |= {"backend": backend, "tree": label, "state": state}
                result["load_average_before"] = load
                print(json.dumps(result["ratios"]), flush=True)
                data["ratio_runs"].append(result)
            if args.low_rate:
                for state, section in states.items():
                    data["low_rate"].extend(
                        low_rate(args, work, backend, bootstrap, champions, state, section)
                    )
                data["low_rate"].append(
                    low_rate(args, work, backend, bootstrap, champions, floor=True)[0]
                )
            if backend == "kafka" and node is not None:
                node.stop_all()
                node = None
    finally:
        if node is not None:
            node.stop_all()
        if redis is not None:
            redis.stop()


def low_rate(
    args: argparse.Namespace,
    work: Path,
    backend: str,
    bootstrap: str | None,
    champions: dict[str, Any],
    state: str = "lmdb",
    section: dict[str, Any] | None = None,
    floor: bool = False,
) -> list[dict[str, Any]]:
    """One worker at a steady ``--low-rate`` purchases/s: e2e p50/p99 and the worker's
    CPU per purchase (whole process over the paced window: idle polls included); today's
    code, and with ``--before-src`` (LMDB state only) another tree's ``src`` under
    today's benchmark. ``section``: the ``[state]`` settings of ``state``. ``floor``:
    the bare consume → produce loop at the same rate instead (benchmarks.latency_floor),
    the latency any consumer of this log pays there."""
    order = [("floor" if floor else "today", ROOT)]
    if args.before_src and state == "lmdb" and not floor:
        # A, B, B, A: the first of two runs in a row measured worse in smoke runs on a
        # loaded machine, whatever the code, so each side gets one first and one second.
        before = ("before", Path(args.before_src).resolve())
        order = [before, order[0], order[0], before]
    rows = []
    for label, tree in order:
        spec = {
            "work": str(work / "today"),
            "backend": backend,
            "bootstrap": bootstrap,
            "champion": champions["today"],
            "low_rate": args.low_rate,
            "duration": args.duration,
            "state": section,
            "floor": floor,
        }
        load = list(os.getloadavg())
        row = child(tree, spec, work, bench_tree=ROOT)["low_rate"]
        where = "-" if floor else state
        row |= {"backend": backend, "code": label, "state": where, "load_average_before": load}
        print(row, flush=True)
        rows.append(row)
    return rows


def baseline_checkout(rev: str, work: Path) -> Path:
    """A detached worktree of ``rev`` (removed at the end of the run)."""
    import subprocess

    path = work / f"checkout-{rev[:10]}-{uuid.uuid4().hex[:4]}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
        check=True,
        capture_output=True,
    )
    return path


def remove_checkout(path: Path) -> None:
    import subprocess

    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
        check=False,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--purchases", type=int, default=100_000, help="backlog size per throughput run"
    )
    parser.add_argument("--backends", default="local,kafka")
    parser.add_argument(
        "--state-backends",
        default="lmdb,redis",
        help="state backends of today's runs (lmdb, redis: a redis-server started here)",
    )
    parser.add_argument(
        "--baseline",
        help="a commit to measure beside today's code in the same run (checked out in a "
        "temporary git worktree), e.g. the one the README's figures came from",
    )
    parser.add_argument("--baseline-tree", help="an existing checkout instead of --baseline")
    parser.add_argument(
        "--before",
        help="a commit whose src/ runs the low-rate point too (checked out in a temporary "
        "git worktree), e.g. the branch point, for a change's before/after",
    )
    parser.add_argument(
        "--before-src",
        help="a checkout whose src/ runs the low-rate point too, under this benchmark "
        "(e.g. the branch point, for a change's before/after)",
    )
    parser.add_argument(
        "--low-rate", type=float, default=1000.0, help="purchases/s of the paced run (0: none)"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per paced run")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also the 2-worker throughput and the latency-vs-load sweep of earlier runs",
    )
    parser.add_argument("--rates", default="0.8333,100,1000,3000,6000", help="--sweep rates")
    parser.add_argument(
        "--peak-duration", type=float, default=60.0, help="seconds at the design's peak"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting a node")
    parser.add_argument("--note", default="", help="a remark for the run-to-run table")
    args = parser.parse_args(argv)
    if args.quick:
        args.purchases, args.duration, args.peak_duration = 20_000, 4.0, 8.0
    from shopsentry.config import Settings

    defaults = Settings(data_dir="unused")
    work = Path(tempfile.mkdtemp(prefix="bench-detector-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "command": " ".join(
            [
                "PYTHONPATH=$PWD/src .venv/bin/python -m benchmarks.bench_detector",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "baseline": args.baseline,
        "batch_max_records": defaults.detector.batch_max_records,
        "batch_max_wait_ms": defaults.detector.batch_max_wait_ms,
        "log_fsync": defaults.log_fsync,
        "load_average_at_start": list(os.getloadavg()),
        "uptime_at_start": _uptime(),
        "ratio_runs": [],
        "low_rate": [],
        "throughput": [],
        "latency": [],
    }
    checkouts = []
    try:
        if args.baseline and not args.baseline_tree:
            checkouts.append(baseline_checkout(args.baseline, work))
            args.baseline_tree = str(checkouts[-1])
        if args.before and not args.before_src:
            checkouts.append(baseline_checkout(args.before, work))
            args.before_src = str(checkouts[-1])
        if args.baseline_tree:
            data["baseline_commit"] = _git("-C", args.baseline_tree, "rev-parse", "--short", "HEAD")
        if args.before_src:
            data["before_commit"] = _git("-C", args.before_src, "rev-parse", "--short", "HEAD")
        ratio_run(args, work, data)
        if args.sweep or args.profile:
            sweep(args, work, data)
    finally:
        for checkout in checkouts:
            remove_checkout(checkout)
        shutil.rmtree(work, ignore_errors=True)
    data["load_average_at_end"] = list(os.getloadavg())
    data["uptime_at_end"] = _uptime()
    with HISTORY.open("a") as history:
        history.write(json.dumps({**summary_of(data), "note": args.note}) + "\n")
    (RESULTS / "bench_detector.json").write_text(json.dumps(data, indent=2, default=str))
    write_markdown(data, RESULTS / "bench_detector.md")
    if data["latency"]:
        plot(data["latency"], RESULTS / "bench_detector_latency.png")
    print(f"wrote {RESULTS / 'bench_detector.md'}", flush=True)
    return 0


def _git(*args: str) -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return done.stdout.strip()


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def sweep(args: argparse.Namespace, work: Path, data: dict[str, Any]) -> None:
    """The earlier runs' sections: 1 and 2 workers (supervised processes) and the
    latency-vs-load sweep with 2 workers; ``--profile``: pyinstrument over one worker."""
    node = None
    try:
        print("training the champion …", flush=True)
        champion = train_champion(work / "sweep")
        data["model"] = {"trees": champion["trees"], "features": list(champion["features"])}
        if args.profile:
            settings = run_settings(work, "local", None, champion)
            data["profile"] = profile(
                settings, min(args.purchases, 100_000), RESULTS / "bench_detector_profile.txt"
            )
            print(data["profile"], flush=True)
        if not args.sweep:
            return
        for backend in args.backends.split(","):
            bootstrap = None
            if backend == "kafka":
                bootstrap, node = kafka_node(args, work / "kafka-sweep")
                if bootstrap is None:
                    continue
            for workers in (1, 2):
                settings = run_settings(work, backend, bootstrap, champion)
                row = {"backend": backend, **throughput(settings, workers, args.purchases)}
                print(row, flush=True)
                data["throughput"].append(row)
            capacity = max(
                r["purchases_per_s"] for r in data["throughput"] if r["backend"] == backend
            )
            rates = [float(r) for r in args.rates.split(",")]
            for rate in [*rates, round(capacity * 0.9), round(capacity * 1.1)]:
                settings = run_settings(work, backend, bootstrap, champion)
                duration = args.peak_duration if rate < 1 else args.duration
                row = {"backend": backend, **latency_at(settings, 2, rate, duration, work)}
                row["saturation_fraction"] = round(rate / capacity, 5)
                print(row, flush=True)
                data["latency"].append(row)
            if node is not None:
                node.stop_all()
                node = None
    finally:
        if node is not None:
            node.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
