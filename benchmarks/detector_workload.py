"""The detector benchmark's workload and its supervised measurements (used by
:mod:`benchmarks.bench_detector` and, in a process of its own, :mod:`benchmarks.detector_drain`):
the champion trained on simulator history, the traffic, per-run settings, drained
throughput of supervised workers, end-to-end latency at a paced rate, the Kafka node."""

from __future__ import annotations

import argparse
import os
import socket
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
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
    from shopsentry.models.scorer import ModelFiles, read_pointer
    from shopsentry.models.training import TrainingConfig, train_and_register
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
    result = train_and_register(TrainingConfig.from_settings(settings), history=work / "history")
    pointer = read_pointer(ModelFiles.from_settings(settings))
    assert pointer is not None
    return {
        "model_path": Path(pointer.model_path),
        "sha256": pointer.sha256,
        "features": pointer.feature_names,
        "trees": result.report["fit"]["trees"],
        "version": pointer.version,
    }


def promote(settings: Any, champion: dict[str, Any]) -> None:
    from shopsentry.models.scorer import ModelFiles, write_pointer

    c = champion
    files = ModelFiles.from_settings(settings)
    write_pointer(files, files.name, c["version"], c["model_path"], c["sha256"], c["features"])


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
def run_settings(
    work: Path,
    backend: str,
    bootstrap: str | None,
    champion: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> Any:
    """Settings of one run: a fresh data dir and group, the log ``backend`` (Kafka: fresh
    topics) and ``state`` (the ``[state]`` section; None: LMDB in the data dir)."""
    from shopsentry.bus import BusConfig, open_log, topic_specs
    from shopsentry.config import Settings, TopicsSettings

    unique = uuid.uuid4().hex[:8]
    overrides: dict[str, Any] = {
        "data_dir": work / f"run-{unique}",
        "detector": {"group_id": f"bench-{unique}"},
        "log_session_timeout_ms": 3000,
    }
    if state is not None:
        overrides["state"] = state
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
    log = open_log(BusConfig.from_settings(settings))
    log.create_topics(topic_specs(settings.topics))
    log.close()
    promote(settings, champion)
    return settings


# -- measurements ------------------------------------------------------------------------
def throughput(settings: Any, workers: int, purchases: int) -> dict[str, Any]:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.detection.runner import Supervisor
    from shopsentry.detection.worker import WorkerOptions

    log = open_log(BusConfig.from_settings(settings))
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
    from shopsentry.bus import BusConfig, open_log
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
    log = open_log(BusConfig.from_settings(settings))
    producer, traffic = log.producer(), Traffic()
    ports = range(base_port, base_port + workers)
    # Warm-up until every worker has decided something (the group has settled after the
    # last member joined); those samples are dropped.
    warm = warm_up(producer, settings, traffic, lambda: [decided(port) for port in ports])
    cpu0 = sum(process_cpu_s(pid) for pid in supervisor.pids)
    sent, offered_s, wall0 = offer(producer, settings, traffic, rate, duration_s)
    # The workers' whole-process CPU over the paced window (idle polls, flushes, state
    # writes and commits of every small batch included), per purchase offered.
    until(lambda: sum(decided(port) for port in ports) >= sum(warm) + sent, offered_s + 60)
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
    return result | percentiles(lat)


def warm_up(
    producer: Any, settings: Any, traffic: Traffic, counts: Any, timeout_s: float = 300
) -> list[int]:
    """A trickle of purchases until every consumer's count (``counts()``: one per
    consumer, purchases done) is above zero, then wait for all of them; the counts then
    (the warm-up samples each consumer drops)."""
    pt = settings.topics.purchase_events.name
    sent = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        key, value = traffic.next_purchase()
        producer.send(pt, value, key)
        producer.flush()
        sent += 1
        time.sleep(0.05)
        if sent % 10 == 0 and all(n > 0 for n in counts()):
            break
    until(lambda: sum(counts()) >= sent, max(0.0, deadline - time.monotonic()))
    time.sleep(1.0)
    return list(counts())


def offer(
    producer: Any, settings: Any, traffic: Traffic, rate: float, duration_s: float
) -> tuple[int, float, float]:
    """Send ``rate`` purchases/s for ``duration_s`` (flushing at most every 5 ms, what a
    web tier would batch); (purchases sent, seconds it took, its start on the monotonic
    clock)."""
    pt = settings.topics.purchase_events.name
    sent = 0
    total = max(1, round(duration_s * rate))
    wall0 = time.monotonic()
    tick = 0.005
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
    return sent, time.monotonic() - wall0, wall0


def until(done: Any, timeout_s: float) -> bool:
    """Wait for ``done()`` (checked every 50 ms) at most ``timeout_s``; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def percentiles(lat_ms: np.ndarray) -> dict[str, float]:
    """p50 / p95 / p99 and the max of latencies in ms (empty: none)."""
    if not lat_ms.size:
        return {}
    out = {f"p{q}_ms": round(float(np.percentile(lat_ms, q)), 2) for q in (50, 95, 99)}
    return out | {"max_ms": round(float(lat_ms.max()), 2)}


def free_ports(n: int) -> int:
    """A base port with ``n`` consecutive free ports after it (metrics of n workers)."""

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

    from shopsentry.bus import BusConfig, open_log
    from shopsentry.detection.runner import build_worker
    from shopsentry.detection.worker import WorkerOptions

    log = open_log(BusConfig.from_settings(settings))
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
def redis_server(where: Path) -> Any:
    """A ``redis-server`` on a free loopback port for the state backend runs
    (``scripts/redis_server.py``; no persistence: the benchmark measures the hot path,
    as LMDB runs without fsync). Stop it with ``.stop()``."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import redis_server as launcher  # scripts/ is not a package

    try:
        return launcher.start_redis(where)
    except launcher.RedisUnavailable as exc:
        raise SystemExit(str(exc)) from None


def kafka_node(args: argparse.Namespace, where: Path) -> tuple[str | None, Any]:
    """``--bootstrap``, or a single KRaft node started here (stop it when done); (None,
    None) when Kafka cannot run on this machine."""
    if args.bootstrap is not None:
        return args.bootstrap, None
    from benchmarks.bench_kafka import load_launcher

    launcher = load_launcher()
    ok, why = launcher.available()
    if not ok:
        print(f"skipping Kafka: {why}", flush=True)
        return None, None
    node = launcher.KafkaCluster(where, brokers=1)
    node.start()
    return node.bootstrap, node
