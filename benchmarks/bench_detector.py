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
   50 active rules + 100,000 list entries (``bench_rules``' workload).
2. ``--baseline REV``: the same measurement, with its own floor, on the code of another
   commit (checked out in a temporary ``git worktree``, its own ``PYTHONPATH`` and its own
   benchmark's model and traffic), e.g. the commit the README's earlier figures came from.
3. **A steady low rate** (``--low-rate``, 1,000 purchases/s): one supervised worker fed by
   a paced producer (flushing every 5 ms); end-to-end p50/p99 (log timestamp → decision
   durable) and the worker's whole-process CPU per purchase over the paced window.
   ``--before REV`` runs it on that commit's ``src`` too, in A, B, B, A order.
4. ``--sweep``: the earlier runs' sections (1 and 2 supervised workers, latency against
   offered load with 2 workers); ``--profile``: pyinstrument over one in-process worker.

Results: ``benchmarks/results/bench_detector.{json,md}`` (the command, commit, ``nproc``,
``uptime`` at start and end, load before each measurement). Never a timed assertion.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
START = datetime(2026, 1, 1, tzinfo=UTC)


# -- the model -------------------------------------------------------------------------
def train_champion(work: Path) -> dict[str, Any]:
    """Simulate 21 days of 2,000 users, train, register (local MLflow); the pointer data."""
    from shopsentry.config import Settings
    from shopsentry.models.scorer import read_pointer
    from shopsentry.models.training import train_and_register
    from shopsentry.simulator import Simulator, SimulatorConfig, write_history

    settings = Settings(data_dir=work / "model")
    sim = Simulator(
        SimulatorConfig(
            users=2000,
            start=START,
            duration_s=21 * 86400,
            events_per_hour=None,
            seed=3,
            fraud_share=0.03,
        )
    )
    write_history(sim, work / "history")
    result = train_and_register(settings, history=work / "history")
    pointer = read_pointer(settings)
    assert pointer is not None
    return {
        "model_path": Path(pointer.model_path),
        "sha256": pointer.sha256,
        "features": pointer.feature_names,
        "trees": result.report["fit"]["trees"],
        "version": pointer.version,
    }


def promote(settings: Any, champion: dict[str, Any]) -> None:
    from shopsentry.models.scorer import write_pointer

    c = champion
    write_pointer(
        settings, settings.model.name, c["version"], c["model_path"], c["sha256"], c["features"]
    )


# -- traffic ---------------------------------------------------------------------------
SIGNAL_BEHAVIOUR = (
    "login", "failed_login", "password_change", "address_change", "payment_method_added",
)  # fmt: skip


class Traffic:
    """Simulator traffic (5,000 users, 14 days: purchases plus the behaviour the features
    use — logins, failed logins, password / address / payment-method changes; page views,
    searches and cart adds are left out so the stream is purchase-heavy), replicated with
    suffixed user, event and order ids so any volume has realistic per-user histories."""

    def __init__(self, users: int = 5000, days: float = 14, seed: int = 5) -> None:
        from shopsentry.simulator import Simulator, SimulatorConfig

        sim = Simulator(
            SimulatorConfig(
                users=users, start=datetime(2026, 2, 1, tzinfo=UTC), duration_s=days * 86400,
                events_per_hour=None, seed=seed, fraud_share=0.015,
            )
        )  # fmt: skip
        self.events: list[tuple[bool, dict[str, Any]]] = [
            (rec.event_type == "purchase", orjson.loads(rec.raw))
            for rec in sim.records()
            if rec.event_type == "purchase" or rec.event_type in SIGNAL_BEHAVIOUR
        ]
        self.purchases_per_copy = sum(1 for is_p, _ in self.events if is_p)
        self.copy = 0
        self.i = 0

    def next(self) -> tuple[bool, bytes, bytes]:
        """(is_purchase, key, value) of the next event, in occurred_at order per copy."""
        if self.i == len(self.events):
            self.i = 0
            self.copy += 1
        is_purchase, event = self.events[self.i]
        self.i += 1
        tag = f"-c{self.copy}"
        data = dict(event)
        data["user_id"] = event["user_id"] + tag
        data["event_id"] = event["event_id"] + tag
        if is_purchase:
            data["order_id"] = event["order_id"] + tag
        return is_purchase, data["user_id"].encode(), orjson.dumps(data)

    def next_purchase(self) -> tuple[bytes, bytes]:
        while True:
            is_purchase, key, value = self.next()
            if is_purchase:
                return key, value


def write_backlog(log: Any, settings: Any, purchases: int, traffic: Traffic) -> int:
    """Write events until ``purchases`` purchases are in; returns records written."""
    producer = log.producer()
    pt, bt = settings.topics.purchase_events.name, settings.topics.user_behavior.name
    sent = done = 0
    while done < purchases:
        is_purchase, key, value = traffic.next()
        producer.send(pt if is_purchase else bt, value, key)
        sent += 1
        done += is_purchase
        if sent % 20_000 == 0:
            producer.flush()
    producer.flush()
    producer.close()
    return sent


# -- settings per run ------------------------------------------------------------------
def run_settings(work: Path, backend: str, bootstrap: str | None, champion: dict[str, Any]) -> Any:
    from shopsentry.bus import open_log, topic_specs
    from shopsentry.config import Settings, TopicsSettings

    unique = uuid.uuid4().hex[:8]
    overrides: dict[str, Any] = {
        "data_dir": work / f"run-{unique}",
        "detector": {"group_id": f"bench-{unique}"},
        "log_session_timeout_ms": 3000,
    }
    if backend == "kafka":
        base = TopicsSettings().with_replication(1)
        overrides["topics"] = {
            name: getattr(base, name).model_copy(
                update={"name": f"{getattr(base, name).name}-{unique}"}
            )
            for name in type(base).model_fields
        }
        overrides["bus"] = f"kafka://{bootstrap}"
    settings = Settings(**overrides)
    log = open_log(settings)
    log.create_topics(topic_specs(settings))
    log.close()
    promote(settings, champion)
    return settings


# -- measurements ------------------------------------------------------------------------
def throughput(settings: Any, workers: int, purchases: int) -> dict[str, Any]:
    from shopsentry.bus import open_log
    from shopsentry.detection.runner import Supervisor
    from shopsentry.detection.worker import WorkerOptions

    log = open_log(settings)
    t0 = time.perf_counter()
    write_backlog(log, settings, purchases, Traffic())
    produce_s = time.perf_counter() - t0
    log.close()
    supervisor = Supervisor(settings, workers, WorkerOptions(exit_when_idle_s=3.0))
    supervisor.start()
    statuses = supervisor.wait(timeout=1800)
    summaries = [s.summary for s in statuses if s.summary is not None]
    assert len(summaries) == workers and all(s.exitcode == 0 for s in statuses), statuses
    first = min(s.first_batch_wall for s in summaries if s.first_batch_wall)
    last = max(s.last_batch_wall for s in summaries if s.last_batch_wall)
    done = sum(s.purchases for s in summaries)
    assert done == purchases, (done, purchases)
    span = last - first
    return {
        "workers": workers,
        "purchases": done,
        "records": sum(s.records for s in summaries),
        "seconds": round(span, 3),
        "purchases_per_s": round(done / span),
        "purchases_per_s_per_worker": round(done / span / workers),
        "records_per_s": round(sum(s.records for s in summaries) / span),
        "batches": sum(s.batches for s in summaries),
        "backlog_write_s": round(produce_s, 2),
        "per_worker_purchases": [s.purchases for s in summaries],
        "per_worker_cpu_s": [round(s.busy_cpu_s, 2) for s in summaries],
        # Purchases per CPU-second of the worker processes: what one uncontended core does.
        "purchases_per_cpu_s": round(done / sum(s.busy_cpu_s for s in summaries)),
    }


def latency_at(
    settings: Any, workers: int, rate: float, duration_s: float, work: Path
) -> dict[str, Any]:
    """Offer ``rate`` purchases/s for ``duration_s`` to running workers; e2e percentiles."""
    from shopsentry.bus import open_log
    from shopsentry.detection.runner import Supervisor
    from shopsentry.detection.worker import WorkerOptions

    samples_dir = work / f"lat-{uuid.uuid4().hex[:6]}"
    base_port = free_ports(workers)
    supervisor = Supervisor(
        settings,
        workers,
        WorkerOptions(
            exit_when_idle_s=4.0 + (1 / rate if rate < 1 else 0),
            latency_samples=samples_dir,
            metrics_port=base_port,
        ),
    )
    supervisor.start()
    log = open_log(settings)
    pt = settings.topics.purchase_events.name
    traffic = Traffic()
    producer = log.producer()
    # Warm-up: a trickle until every worker has decided something (the group has settled
    # after the last member joined), then wait for all of it; those samples are dropped.
    warm_sent = 0
    warm = [0] * workers
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        key, value = traffic.next_purchase()
        producer.send(pt, value, key)
        producer.flush()
        warm_sent += 1
        time.sleep(0.05)
        if warm_sent % 10 == 0 and all(decided(base_port + i) > 0 for i in range(workers)):
            break
    while time.monotonic() < deadline:
        warm = [decided(base_port + i) for i in range(workers)]
        if sum(warm) >= warm_sent:
            break
        time.sleep(0.1)
    time.sleep(1.0)
    sent = 0
    total = max(1, round(duration_s * rate))
    cpu0 = sum(process_cpu_s(pid) for pid in supervisor.pids)
    wall0 = time.monotonic()
    tick = 0.005  # the producer flushes at most every 5 ms (what a web tier would batch)
    while sent < total:
        due = min(total, int((time.monotonic() - wall0) * rate) + 1)
        while sent < due:
            key, value = traffic.next_purchase()
            producer.send(pt, value, key)
            sent += 1
        producer.flush()
        wait = sent / rate - (time.monotonic() - wall0)
        time.sleep(min(max(wait, tick), 1.0))
    producer.flush()
    producer.close()
    offered_s = time.monotonic() - wall0
    # The workers' whole-process CPU over the paced window (idle polls, flushes, state
    # writes and commits of every small batch included), per purchase offered.
    while sum(decided(base_port + i) for i in range(workers)) < sum(warm) + sent:
        if time.monotonic() - wall0 > offered_s + 60:
            break
        time.sleep(0.05)
    cpu_s = sum(process_cpu_s(pid) for pid in supervisor.pids) - cpu0
    busy_s = time.monotonic() - wall0
    statuses = supervisor.wait(timeout=1800)
    log.close()
    assert all(s.exitcode == 0 for s in statuses), statuses
    batches = sum(s.summary.batches for s in statuses if s.summary is not None)
    arrays = []
    for i in range(workers):
        path = samples_dir / f"worker-{i}.npy"
        if path.exists():
            arrays.append(np.load(path)[warm[i] :])  # drop the warm-up samples
    lat = np.concatenate(arrays) * 1000 if arrays else np.zeros(0)
    result = {
        "offered_per_s": rate,
        "offered_label": _rate_label(rate),
        "sent": sent,
        "achieved_per_s": round(sent / offered_s, 1),
        "samples": int(lat.size),
        "workers": workers,
        "cpu_us_per_purchase": round(cpu_s / sent * 1e6, 1),
        "purchases_per_batch": round((sent + sum(warm)) / batches, 1) if batches else None,
        "cpu_share_of_a_core": round(cpu_s / busy_s, 3),
    }
    if lat.size:
        result |= {f"p{q}_ms": round(float(np.percentile(lat, q)), 2) for q in (50, 95, 99)}
        result["max_ms"] = round(float(lat.max()), 2)
    return result


def free_ports(n: int) -> int:
    """A base port with ``n`` consecutive free ports after it (metrics of n workers)."""
    import socket

    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + n >= 65535:
            continue
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free consecutive ports")


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a running process, every thread (Linux /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decided(port: int) -> int:
    """Decisions a worker has made so far (0 while its endpoint is not up)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("shopsentry_decisions_total{")
        )
    )


def _rate_label(rate: float) -> str:
    return f"{rate * 3600:,.0f}/h" if rate < 1 else f"{rate:,.0f}/s"


def profile(settings: Any, purchases: int, out: Path) -> str:
    """pyinstrument over one in-process worker draining a backlog."""
    from pyinstrument import Profiler

    from shopsentry.bus import open_log
    from shopsentry.detection.runner import build_worker
    from shopsentry.detection.worker import WorkerOptions

    log = open_log(settings)
    write_backlog(log, settings, purchases, Traffic())
    log.close()
    worker = build_worker(settings, WorkerOptions(exit_when_idle_s=1.0))
    profiler = Profiler(interval=0.0005)
    profiler.start()
    summary = worker.run()
    profiler.stop()
    worker.store.close()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    out.write_text(text)
    span = summary.last_batch_wall - summary.first_batch_wall
    return f"{summary.purchases} purchases in {span:.2f}s under the profiler ({summary.purchases / span:,.0f}/s)"  # noqa: E501


# -- Kafka -----------------------------------------------------------------------------
def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "shopsentry_kafka_launcher", ROOT / "scripts" / "kafka" / "cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def kafka_node(args: argparse.Namespace, where: Path) -> tuple[str | None, Any]:
    """``--bootstrap``, or a single KRaft node started here (stop it when done); (None,
    None) when Kafka cannot run on this machine."""
    if args.bootstrap is not None:
        return args.bootstrap, None
    launcher = load_launcher()
    ok, why = launcher.available()
    if not ok:
        print(f"skipping Kafka: {why}", flush=True)
        return None, None
    node = launcher.KafkaCluster(where, brokers=1)
    node.start()
    return node.bootstrap, node


# -- report ----------------------------------------------------------------------------
def plot(latency: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for backend in sorted({r["backend"] for r in latency}):
        rows = sorted(
            (r for r in latency if r["backend"] == backend and "p50_ms" in r),
            key=lambda r: r["achieved_per_s"],
        )
        x = [max(r["achieved_per_s"], 0.5) for r in rows]
        for q, style in (("p50", "-o"), ("p95", "--s"), ("p99", ":^")):
            ax.plot(x, [r[f"{q}_ms"] for r in rows], style, label=f"{backend} {q}")
    ax.axhline(50, color="grey", lw=0.8)
    ax.text(1, 52, "target p99 at 1,000/s: 50 ms", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered purchases per second (achieved), 2 workers")
    ax.set_ylabel("end-to-end latency, ms (log timestamp → decision durable)")
    ax.set_title("shopsentry detector: latency vs offered load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


HISTORY = RESULTS / "bench_detector_history.jsonl"


def summary_of(data: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one run, for the run-to-run table (a shared machine varies)."""
    row: dict[str, Any] = {
        "date": data["date"],
        "load_average_at_start": [round(x, 2) for x in data.get("load_average_at_start", [])],
    }
    for run in data.get("ratio_runs", []):
        if run["tree"] != "today":
            continue
        backend = run["backend"]
        row[f"{backend}_1w_purchases_per_s"] = run["shopsentry"]["purchases_per_s"]
        share = run["ratios"]["shopsentry"]["throughput_share_of_floor"]
        row[f"{backend}_share_of_floor"] = share
    for r in data["throughput"]:
        row[f"{r['backend']}_{r['workers']}w_purchases_per_s"] = r["purchases_per_s"]
    for r in data["latency"] + data.get("low_rate", []):
        if r["offered_per_s"] == 1000.0 and "p99_ms" in r and r.get("code", "today") == "today":
            row[f"{r['backend']}_p99_ms_at_1000"] = r["p99_ms"]
    return row


KIND_LABELS = {
    "shopsentry": "shopsentry (one worker)",
    "floor": "floor: bare consume → produce loop",
    "shopsentry_no_entities": "shopsentry without the entity store",
    "shopsentry_rules": "shopsentry with 50 active rules + 100,000 list entries",
}


def ratio_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        "## One worker against the floor (same run, same records)",
        "",
        "A backlog drained under a fresh group by one worker in one process"
        " (`runner.build_worker` + `Worker.run`); the floor is a bare consume → produce loop"
        " over the same records in the same process kind (Kafka: plain confluent-kafka,"
        " acks=all + idempotence; embedded log: its own consumer and producer), one output"
        " per purchase, flush per batch. CPU is the whole process (every thread) over the busy"
        " span. Ratios are what to compare across machines; absolute figures move with the"
        " machine and its load.",
        "",
        "| backend | code | run | purchases/s | CPU-s per 100k purchases | CPU µs per purchase"
        " | share of floor (throughput) | share of floor (CPU) | load before |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in data.get("ratio_runs", []):
        code = (
            run["tree"] if run["tree"] == "today" else f"baseline {data.get('baseline_commit', '')}"
        )
        for kind, label in KIND_LABELS.items():
            if kind not in run:
                continue
            r, share = run[kind], run["ratios"].get(kind, {})
            lines.append(
                f"| {run['backend']} | {code} | {label} | {r['purchases_per_s']:,} | {r['cpu_s_per_100k']}"  # noqa: E501
                f" | {r['cpu_us_per_purchase']} | {_pct(share.get('throughput_share_of_floor'))}"
                f" | {_pct(share.get('cpu_share_of_floor'))} | {[round(x, 2) for x in run['load_average_before']]} |"  # noqa: E501
            )
    lines += ["", *derived_lines(data), ""]
    if data.get("low_rate"):
        lines += [
            "## A steady low rate (one worker, paced producer)",
            "",
            "| backend | code | offered/s | achieved/s | samples | p50 ms | p99 ms | max ms"
            " | worker CPU µs per purchase | purchases per batch | worker CPU, share of a core |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in data["low_rate"]:
            lines.append(
                f"| {r['backend']} | {r.get('code', 'today')} | {r['offered_per_s']:,.0f} | {r['achieved_per_s']:,} | {r['samples']:,}"  # noqa: E501
                f" | {r.get('p50_ms', '-')} | {r.get('p99_ms', '-')} | {r.get('max_ms', '-')}"
                f" | {r['cpu_us_per_purchase']} | {r.get('purchases_per_batch', '-')}"
                f" | {r['cpu_share_of_a_core']} |"
            )
        lines += ["", *low_rate_lines(data), ""]
    return lines


def derived_lines(data: dict[str, Any]) -> list[str]:
    """Before/after, the entity store's share and the rules' cost, as ratios of one run."""
    runs = {(r["backend"], r["tree"]): r for r in data.get("ratio_runs", [])}
    lines = []
    for backend in ("local", "kafka"):
        today = runs.get((backend, "today"))
        if today is None:
            continue
        t = today["shopsentry"]
        if "shopsentry_no_entities" in today:
            n = today["shopsentry_no_entities"]
            lines.append(
                f"- {backend}: with the entity store {t['purchases_per_s']:,}/s vs"
                f" {n['purchases_per_s']:,}/s without it = {_pct(t['purchases_per_s'] / n['purchases_per_s'])}"  # noqa: E501
                f" (target 91%); entity lookups and updates take"
                f" {_pct(1 - n['cpu_s_per_100k'] / t['cpu_s_per_100k'])} of the hot path's CPU."
            )
        if "shopsentry_rules" in today:
            r = today["shopsentry_rules"]
            lines.append(
                f"- {backend}: 50 active rules + 100,000 list entries: {r['purchases_per_s']:,}/s ="
                f" {_pct(r['purchases_per_s'] / t['purchases_per_s'])} of the same code without rules"  # noqa: E501
                f" (target ≥ 90%); by CPU {_pct(t['cpu_s_per_100k'] / r['cpu_s_per_100k'])}."
            )
        base = runs.get((backend, "baseline"))
        if base is not None:
            b = base["shopsentry"]
            lines.append(
                f"- {backend}: today vs baseline {data.get('baseline_commit', '')}:"
                f" {_pct(t['purchases_per_s'] / b['purchases_per_s'])} of its throughput,"
                f" {_pct(b['cpu_s_per_100k'] / t['cpu_s_per_100k'])} of its purchases per CPU-second;"  # noqa: E501
                f" share of the floor {_pct(today['ratios']['shopsentry']['throughput_share_of_floor'])}"  # noqa: E501
                f" today vs {_pct(base['ratios']['shopsentry']['throughput_share_of_floor'])} then"
                f" (models: {data.get('models', {}).get('today')} today,"
                f" {data.get('models', {}).get('baseline')} then)."
            )
    return lines


def low_rate_lines(data: dict[str, Any]) -> list[str]:
    """Today vs ``--before-src`` at the paced rate: means of the A, B, B, A runs."""
    lines = []
    for backend in ("local", "kafka"):
        rows = [r for r in data.get("low_rate", []) if r["backend"] == backend]
        means = {}
        for code in ("today", "before"):
            mine = [r for r in rows if r.get("code", "today") == code and "p99_ms" in r]
            if mine:
                means[code] = {
                    k: sum(r[k] for r in mine) / len(mine)
                    for k in ("cpu_us_per_purchase", "p50_ms", "p99_ms", "purchases_per_batch")
                }
        if len(means) == 2:
            t, b = means["today"], means["before"]
            lines.append(
                f"- {backend} at {rows[0]['offered_per_s']:,.0f}/s (mean of two runs each):"
                f" CPU {t['cpu_us_per_purchase']:.0f} µs per purchase today vs"
                f" {b['cpu_us_per_purchase']:.0f} before ({data.get('before_commit', '')}),"
                f" {t['purchases_per_batch']:.1f} vs {b['purchases_per_batch']:.1f} purchases"
                f" per batch; p50 {t['p50_ms']:.0f} vs {b['p50_ms']:.0f} ms, p99"
                f" {t['p99_ms']:.0f} vs {b['p99_ms']:.0f} ms."
            )
    return lines


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def write_markdown(data: dict[str, Any], path: Path) -> None:
    lines = [
        "# Detector benchmark (the hot path)",
        "",
        f"- command: `{data['command']}`",
        f"- date: {data['date']}, commit {data.get('commit')}, nproc: {data['nproc']}, python {data['python']}, {data['platform']}",  # noqa: E501
        f"- uptime at start: `{data.get('uptime_at_start')}`; at end: `{data.get('uptime_at_end')}`",  # noqa: E501
        f"- settings: batch_max_records={data['batch_max_records']}, batch_max_wait_ms={data['batch_max_wait_ms']}, "  # noqa: E501
        f"embedded log fsync={data['log_fsync']}, state: LMDB in the data dir (no fsync per commit, like SQLite's synchronous=NORMAL)",  # noqa: E501
        "- note: the machine is shared (2 cores, other jobs running: see the load column); on"
        " Kafka the broker shares the cores with the worker.",
        "",
        *ratio_lines(data),
    ]
    if data["throughput"]:
        lines += [
            "## Sustained throughput (backlog drained, supervised worker processes)",
            "",
            "| backend | workers | purchases | seconds | purchases/s | per worker | records/s "
            "| purchases per worker CPU-second |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for r in data["throughput"]:
        lines.append(
            f"| {r['backend']} | {r['workers']} | {r['purchases']:,} | {r['seconds']} | {r['purchases_per_s']:,} "  # noqa: E501
            f"| {r['purchases_per_s_per_worker']:,} | {r['records_per_s']:,} | {r['purchases_per_cpu_s']:,} |"  # noqa: E501
        )
    if not data["latency"]:
        _tail(data, lines)
        path.write_text("\n".join(lines))
        return
    lines += [
        "",
        "Targets: ≥ 20,000 purchases/s per worker on the embedded log, ≥ 10,000/s per worker on Kafka.",  # noqa: E501
        "",
        "## End-to-end latency vs offered load (2 workers)",
        "",
        "| backend | offered | achieved/s | samples | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["latency"]:
        lines.append(
            f"| {r['backend']} | {r['offered_label']} | {r['achieved_per_s']:,} | {r['samples']:,} | {r.get('p50_ms', '-')} "  # noqa: E501
            f"| {r.get('p95_ms', '-')} | {r.get('p99_ms', '-')} | {r.get('max_ms', '-')} |"
        )
    lines += [
        "",
        "Target: p99 < 50 ms at 1,000 events/s. Plot: `bench_detector_latency.png`.",
        "The last two points per backend offer 0.9x and 1.1x the measured 2-worker throughput of"
        " the mixed backlog (purchases + behaviour); the latency runs send purchases only, which"
        " cost less per record, so these points are near, not beyond, saturation.",
        "",
    ]
    _tail(data, lines)
    path.write_text("\n".join(lines))


def _tail(data: dict[str, Any], lines: list[str]) -> None:
    if data.get("profile"):
        lines += [
            "## Profile",
            "",
            data["profile"],
            "",
            "Full text: `bench_detector_profile.txt`.",
            "",
        ]
    if HISTORY.exists():
        runs = [json.loads(line) for line in HISTORY.read_text().splitlines() if line.strip()]
        keys = [
            "local_1w_purchases_per_s", "kafka_1w_purchases_per_s", "local_share_of_floor",
            "kafka_share_of_floor", "local_p99_ms_at_1000", "kafka_p99_ms_at_1000",
        ]  # fmt: skip
        lines += [
            "## Run-to-run variation (same command, shared 2-core machine)",
            "",
            "| date | load avg at start | " + " | ".join(keys) + " | note |",
            "|---|---|" + "---|" * (len(keys) + 1),
        ]
        for run in runs:
            cells = [str(run.get(k, "-")) for k in keys] + [run.get("note", "")]
            lines.append(
                f"| {run['date']} | {run['load_average_at_start']} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    lines += ["Seed design for comparison: 3.125 events/s per worker and 320 ms end to end.", ""]


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


def per_100k(row: dict[str, Any]) -> dict[str, Any]:
    """Wall-clock and CPU figures of one drain, normalised."""
    n = row["purchases"]
    return {
        **row,
        "purchases_per_s": round(n / row["seconds"]) if row["seconds"] else None,
        "cpu_s_per_100k": round(row["cpu_s"] / n * 100_000, 2),
        "cpu_us_per_purchase": round(row["cpu_s"] / n * 1e6, 1),
    }


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Each detector run as a share of the floor measured in the same process: by
    wall-clock throughput and by CPU per purchase (floor CPU ÷ its CPU)."""
    floor = results.get("floor")
    out: dict[str, Any] = {}
    for kind, row in results.items():
        if not isinstance(row, dict) or "cpu_s" not in row:
            continue
        row = results[kind] = per_100k(row)
        if floor is not None and kind != "floor":
            f = per_100k(floor)
            out[kind] = {
                "throughput_share_of_floor": round(
                    row["purchases_per_s"] / f["purchases_per_s"], 4
                ),
                "cpu_share_of_floor": round(f["cpu_s_per_100k"] / row["cpu_s_per_100k"], 4),
            }
    return out


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
    try:
        for backend in args.backends.split(","):
            bootstrap = None
            if backend == "kafka":
                bootstrap, node = kafka_node(args, work / "kafka")
                if bootstrap is None:
                    continue
            for label, tree in trees.items():
                kinds = ["shopsentry", "floor"]
                if label == "today":
                    kinds += ["shopsentry_no_entities", "shopsentry_rules"]
                spec = {
                    "work": str(work / label),
                    "backend": backend,
                    "bootstrap": bootstrap,
                    "purchases": args.purchases,
                    "kinds": kinds,
                    "champion": champions[label],
                    "rules": 50,
                    "entries": 100_000,
                }
                load = list(os.getloadavg())
                result = child(tree, spec, work)
                result["ratios"] = ratios(result)
                result |= {"backend": backend, "tree": label, "load_average_before": load}
                print(json.dumps(result["ratios"]), flush=True)
                data["ratio_runs"].append(result)
            if backend == "kafka" and node is not None:
                if args.low_rate:
                    data["low_rate"].extend(low_rate(args, work, backend, bootstrap, champions))
                node.stop_all()
                node = None
            elif args.low_rate:
                data["low_rate"].extend(low_rate(args, work, backend, bootstrap, champions))
    finally:
        if node is not None:
            node.stop_all()


def low_rate(
    args: argparse.Namespace,
    work: Path,
    backend: str,
    bootstrap: str | None,
    champions: dict[str, Any],
) -> list[dict[str, Any]]:
    """One worker at a steady ``--low-rate`` purchases/s: e2e p50/p99 and the worker's
    CPU per purchase (whole process over the paced window: idle polls included); today's
    code, and with ``--before-src`` another tree's ``src`` under today's benchmark."""
    order = [("today", ROOT)]
    if args.before_src:
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
        }
        load = list(os.getloadavg())
        row = child(tree, spec, work, bench_tree=ROOT)["low_rate"]
        row |= {"backend": backend, "code": label, "load_average_before": load}
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
        "--peak-duration", type=float, default=60.0, help="seconds at the seed's peak"
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
