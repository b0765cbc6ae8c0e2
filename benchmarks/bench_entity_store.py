"""What the entity store costs one detector worker, before and after a change, in one run.

One worker drains a backlog in one process (:mod:`benchmarks.detector_drain`, as in
:mod:`benchmarks.bench_detector`): with the entity store, without it (entity features
missing) and the bare consume → produce floor, over the same records. Two code trees
(``--before`` and ``--after``, commits checked out in temporary worktrees), in the
order A, B, B, A so neither side always runs first on a loaded machine; one champion
trained once and served by both. Results: ``benchmarks/results/entity_store_cost.{json,md}``.

    PYTHONPATH=$PWD/src .venv/bin/python -m benchmarks.bench_entity_store --before main
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_detector import baseline_checkout, child, remove_checkout
from benchmarks.detector_report import ratios
from benchmarks.detector_workload import RESULTS, ROOT

KINDS = ["shopsentry", "shopsentry_no_entities", "floor"]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=False
    ).stdout.strip()


def measure(trees: dict[str, Path], purchases: int, work: Path) -> list[dict[str, Any]]:
    """A, B, B, A drains (each: with / without the entity store, and the floor)."""
    print("training the champion …", flush=True)
    labels = list(trees)
    spec = {"work": str(work / "model"), "train_only": True}
    champion = child(trees[labels[-1]], spec, work, bench_tree=ROOT)["champion"]
    runs = []
    for label in [labels[0], labels[1], labels[1], labels[0]]:
        spec = {
            "work": str(work / f"{label}-{len(runs)}"),
            "backend": "local",
            "purchases": purchases,
            "kinds": KINDS,
            "champion": champion,
        }
        load = list(os.getloadavg())
        result = child(trees[label], spec, work, bench_tree=ROOT)
        result["ratios"] = ratios(result)
        with_store, without = result["shopsentry"], result["shopsentry_no_entities"]
        result |= {
            "tree": label,
            "load_average_before": load,
            "with_store_share_of_without": round(
                with_store["purchases_per_s"] / without["purchases_per_s"], 4
            ),
            "with_store_share_of_without_cpu": round(without["cpu_s"] / with_store["cpu_s"], 4),
        }
        print(label, json.dumps(result["ratios"]), flush=True)
        runs.append(result)
    return runs


def _mean(runs: list[dict[str, Any]], label: str, get: Any) -> float:
    values = [get(r) for r in runs if r["tree"] == label]
    return sum(values) / len(values)


def _cpu_share(r: dict[str, Any]) -> float:
    """Purchases per CPU-second with the entity store over those without it."""
    return float(r["shopsentry_no_entities"]["cpu_s"] / r["shopsentry"]["cpu_s"])


def _row(i: int, r: dict[str, Any]) -> str:
    s, n, f = r["shopsentry"], r["shopsentry_no_entities"], r["floor"]
    share = r["ratios"]["shopsentry"]
    load = [round(x, 2) for x in r["load_average_before"]]
    cells = [
        r["tree"],
        str(i + 1),
        f"{s['purchases_per_s']:,.0f}",
        f"{n['purchases_per_s']:,.0f}",
        f"{f['purchases_per_s']:,.0f}",
        f"{r['with_store_share_of_without']:.1%}",
        f"{_cpu_share(r):.1%}",
        f"{share['throughput_share_of_floor']:.1%}",
        f"{share['cpu_share_of_floor']:.1%}",
        f"{s['cpu_us_per_purchase']:.1f}",
        str(load),
    ]
    return "| " + " | ".join(cells) + " |"


def _summary(runs: list[dict[str, Any]], label: str) -> str:
    floor = _mean(runs, label, lambda r: r["ratios"]["shopsentry"]["throughput_share_of_floor"])
    store = _mean(runs, label, lambda r: r["with_store_share_of_without"])
    store_cpu = _mean(runs, label, _cpu_share)
    cpu = _mean(runs, label, lambda r: r["shopsentry"]["cpu_us_per_purchase"])
    return (
        f"- {label} (mean of two): {floor:.1%} of the floor's throughput; with the entity "
        f"store {store:.1%} of the throughput without it ({store_cpu:.1%} by CPU); "
        f"{cpu:.1f} CPU µs per purchase"
    )


def write_markdown(data: dict[str, Any], path: Path) -> None:
    header = [
        "code", "run", "with store /s", "without store /s", "floor /s", "with ÷ without",
        "with ÷ without (CPU)",
        "share of floor (throughput)", "share of floor (CPU)", "CPU µs per purchase",
        "load before",
    ]  # fmt: skip
    lines = [
        "# The entity store's cost to one detector worker (before / after)",
        "",
        f"- command: `{data['command']}`",
        f"- date: {data['date']}, before = {data['before_commit']}, after = {data['after']}, "
        f"nproc: {data['nproc']}, python {data['python']}",
        f"- uptime at start: `{data['uptime_start']}`; at end: `{data['uptime_end']}`",
        "- one worker, embedded log, LMDB state and entity store; runs in the order A, B, B, A",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *(_row(i, r) for i, r in enumerate(data["runs"])),
        "",
        _summary(data["runs"], "before"),
        _summary(data["runs"], "after"),
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the commit to compare against")
    parser.add_argument("--after", default="HEAD", help="the commit with the change")
    parser.add_argument("--purchases", type=int, default=20_000, help="backlog per drain")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.bench_entity_store", *(argv or sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "uptime_start": _uptime(),
        "before_commit": _git("-C", str(ROOT), "rev-parse", "--short", args.before),
        "after": _git("-C", str(ROOT), "rev-parse", "--short", args.after),
        "purchases": args.purchases,
    }
    with tempfile.TemporaryDirectory(prefix="bench-entity-") as tmp:
        work = Path(tmp)
        trees = {"before": baseline_checkout(args.before, work)}
        try:
            trees["after"] = baseline_checkout(args.after, work)
            data["runs"] = measure(trees, args.purchases, work)
        finally:
            for tree in trees.values():
                remove_checkout(tree)
    data["uptime_end"] = _uptime()
    (RESULTS / "entity_store_cost.json").write_text(json.dumps(data, indent=2, default=str))
    write_markdown(data, RESULTS / "entity_store_cost.md")
    print(f"wrote {RESULTS / 'entity_store_cost.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
