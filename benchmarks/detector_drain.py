"""One throughput measurement of :mod:`benchmarks.bench_detector`, in a process of its own.

    python benchmarks/detector_drain.py SPEC.json   (SPEC: see :func:`main`)

Run with ``PYTHONPATH=<tree>/src:<tree>``: it imports ``shopsentry`` and that tree's own
``benchmarks.bench_detector`` (its ``train_champion``, ``run_settings``, ``Traffic`` and
``write_backlog``), so the same driver measures today's code and an older commit checked
out in another worktree. It uses only what both have: ``runner.build_worker`` and
``Worker.run`` (one worker, in this process) and the log's consumer / producer.

Measured the same way for every kind:

* ``shopsentry``: a backlog (purchases + one behaviour event per ~0.8 purchase) is written,
  then one worker drains it under a fresh group and exits when idle.
* ``floor``: the same records, another fresh group, through a bare consume → produce loop
  (one output per purchase, flush per batch, commit without waiting): on Kafka plain
  confluent-kafka clients, on the embedded log its own consumer and producer. What any
  consumer of that log pays before doing any work: the limit shopsentry is compared to.

Throughput is purchases over the busy span (end of the first batch to end of the last);
CPU is the whole process's (every thread, ``time.process_time``) over that same span.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def open_bus(settings: Any) -> Any:
    """The log ``settings`` names, on today's tree (``open_log`` takes a BusConfig) and on
    an older one (it took the whole Settings)."""
    from shopsentry import bus

    config = getattr(bus, "BusConfig", None)
    return bus.open_log(config.from_settings(settings) if config is not None else settings)


def _cpu() -> float:
    return time.process_time()


def _rusage_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def variant(bd: Any, settings: Any, champion: dict[str, Any], work: Path) -> Any:
    """``settings`` with a fresh consumer group and data dir (state, model pointer), on
    the same log."""
    unique = uuid.uuid4().hex[:8]
    update: dict[str, Any] = {
        "data_dir": work / f"variant-{unique}",
        "detector": settings.detector.model_copy(update={"group_id": f"bench-{unique}"}),
    }
    if not settings.bus.startswith("kafka://"):
        update["bus"] = f"local://{settings.log_dir}"
    fresh = settings.model_copy(update=update)
    bd.promote(fresh, champion)
    return fresh


def preload_rules(rules: int, entries: int) -> float:
    """Have every worker of this process start with ``rules`` active rules and
    ``entries`` list entries (the workload of ``benchmarks.bench_rules``); returns the
    seconds compiling them took. The rule set is handed to the follower directly rather
    than read from the control topic: this measures the hot path, not the follower's
    initial read (which applies one record at a time)."""
    from benchmarks.bench_rules import _entries, _rules
    from shopsentry.features.definitions import FEATURE_NAMES
    from shopsentry.rules.control import RuleSetFollower
    from shopsentry.rules.engine import CompiledRuleSet
    from shopsentry.rules.model import RuleSet

    rule_set = RuleSet(rules=_rules(rules), entries=_entries(entries))
    t0 = time.perf_counter()
    CompiledRuleSet(rule_set, FEATURE_NAMES)
    compile_s = time.perf_counter() - t0

    def load_initial(self: Any, feature_names: Any, *, timeout_s: float = 30.0) -> Any:
        self._feature_names = tuple(feature_names)
        self.rule_set = rule_set
        self._compiled = CompiledRuleSet(rule_set, self._feature_names)
        return self._compiled

    RuleSetFollower.load_initial = load_initial  # type: ignore[method-assign]
    return compile_s


def _worker(settings: Any, options: Any, entities: bool) -> Any:
    from shopsentry.detection.runner import build_worker

    if entities:
        return build_worker(settings, options)
    # The same worker without the entity store: entity features missing (NaN), so no
    # entity lookup or update (what the hot path cost before the entity features).
    import shopsentry.features.entity_store as es

    saved = es.open_entity_store
    es.open_entity_store = lambda _settings: None  # type: ignore[assignment]
    try:
        return build_worker(settings, options)
    finally:
        es.open_entity_store = saved


def drain_shopsentry(settings: Any, *, entities: bool = True) -> dict[str, Any]:
    from shopsentry.detection.worker import WorkerOptions

    cpu0 = _rusage_cpu()
    worker = _worker(settings, WorkerOptions(exit_when_idle_s=1.5), entities)
    summary = worker.run()
    worker.store.close()
    worker.log.close()
    span = summary.last_batch_wall - summary.first_batch_wall
    return {
        "purchases": summary.purchases,
        "records": summary.records,
        "batches": summary.batches,
        "seconds": span,
        "cpu_s": summary.busy_cpu_s,
        "process_cpu_s_with_startup_and_idle_exit": _rusage_cpu() - cpu0,
    }


def profiled(settings: Any, out: Path) -> dict[str, Any]:
    """:func:`drain_shopsentry` under pyinstrument (the text tree written to ``out``)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    row = drain_shopsentry(settings)
    profiler.stop()
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return row


class FloorClock:
    """A floor loop's counts and its busy span (end of the first batch to end of the
    last, as the worker's summary measures it)."""

    def __init__(self, expected_records: int) -> None:
        self.expected = expected_records
        self.purchases = self.records = self.batches = 0
        self.first_wall = self.last_wall = self.first_cpu = self.last_cpu = 0.0
        self.idle_since = time.monotonic()

    def more(self) -> bool:
        return self.records < self.expected and time.monotonic() - self.idle_since < 30

    def batch(self, records: int, purchases: int) -> None:
        self.records += records
        self.purchases += purchases
        self.batches += 1
        self.idle_since = time.monotonic()
        self.last_wall, self.last_cpu = time.time(), _cpu()
        if not self.first_wall:
            self.first_wall, self.first_cpu = self.last_wall, self.last_cpu

    def result(self) -> dict[str, Any]:
        return {
            "purchases": self.purchases,
            "records": self.records,
            "batches": self.batches,
            "seconds": self.last_wall - self.first_wall,
            "cpu_s": self.last_cpu - self.first_cpu,
        }


def floor_clients(settings: Any, bootstrap: str) -> tuple[Any, Any]:
    """A floor loop's plain confluent-kafka consumer (a fresh group, from the start) and
    producer (as durable as shopsentry's: acks=all, idempotence, the same linger)."""
    from confluent_kafka import Consumer, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"floor-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": settings.kafka.linger_ms,
            "queue.buffering.max.messages": 500_000,
        }
    )
    return consumer, producer


def drain_floor_kafka(settings: Any, bootstrap: str) -> dict[str, Any]:
    """confluent-kafka only: consume a batch, produce one record per purchase, flush,
    commit without waiting; the producer as durable as shopsentry's (acks=all,
    idempotence, the same linger)."""
    topics = settings.topics
    purchase_topic = topics.purchase_events.name
    out_topic = topics.decisions.name
    consumer, producer = floor_clients(settings, bootstrap)
    consumer.subscribe([purchase_topic, topics.user_behavior.name])
    clock = FloorClock(_expected_records(settings))
    while clock.more():
        messages = consumer.consume(num_messages=settings.detector.batch_max_records, timeout=0.2)
        if not messages:
            continue
        purchases = 0
        for m in messages:
            if m.topic() == purchase_topic and m.error() is None:
                purchases += 1
                producer.produce(out_topic, m.value(), m.key())
        producer.flush()
        consumer.commit(asynchronous=True)
        clock.batch(sum(m.error() is None for m in messages), purchases)
    consumer.close()
    return clock.result()


def drain_floor_local(settings: Any) -> dict[str, Any]:
    """The embedded log's own consumer and producer, nothing else."""

    topics = settings.topics
    purchase_topic = topics.purchase_events.name
    out_topic = topics.decisions.name
    log = open_bus(settings)
    consumer = log.consumer(
        f"floor-{uuid.uuid4().hex[:8]}",
        [purchase_topic, topics.user_behavior.name],
        auto_offset_reset="earliest",
    )
    producer = log.producer()
    clock = FloorClock(_expected_records(settings))
    while clock.more():
        batch = consumer.poll(max_records=settings.detector.batch_max_records, timeout=0.2)
        if not batch:
            continue
        offsets = {}
        purchases = 0
        for r in batch:
            offsets[(r.topic, r.partition)] = r.offset + 1
            if r.topic == purchase_topic:
                purchases += 1
                producer.send(out_topic, r.value, r.key)
        producer.flush()
        _commit_local(consumer, offsets)
        clock.batch(len(batch), purchases)
    consumer.close()
    producer.close()
    log.close()
    return clock.result()


def _commit_local(consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
    from shopsentry.bus.base import TopicPartition

    consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()}, asynchronous=True)


_EXPECTED: dict[str, int] = {}


def _expected_records(settings: Any) -> int:
    return _EXPECTED[str(settings.data_dir)]


def main(argv: list[str]) -> int:
    """SPEC (JSON): work (a directory), backend (local | kafka), bootstrap (Kafka only),
    purchases, kinds (list of "shopsentry" / "floor", run in that order over one
    backlog), champion (null: train one here and print it), out (result JSON path);
    low_rate + duration: one worker at that paced rate instead (with floor: the bare
    loop of :mod:`benchmarks.latency_floor` instead of a worker)."""
    spec = json.loads(Path(argv[0]).read_text())
    import benchmarks.bench_detector as bd

    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    champion = spec.get("champion")
    if champion is None:
        champion = bd.train_champion(work)
    else:
        champion = {**champion, "model_path": Path(champion["model_path"])}
    results: dict[str, Any] = {
        "model": {"trees": champion["trees"], "features": len(champion["features"])}
    }
    if spec.get("train_only"):
        results["champion"] = {**champion, "model_path": str(champion["model_path"])}
        Path(spec["out"]).write_text(json.dumps(results, default=str))
        return 0
    state = {"state": spec["state"]} if spec.get("state") else {}  # older trees: LMDB only
    settings = bd.run_settings(work, spec["backend"], spec.get("bootstrap"), champion, **state)
    if spec.get("low_rate") and spec.get("floor"):
        # The bare loop at the same paced rate (today's benchmarks only).
        from benchmarks.latency_floor import latency_floor_at

        results["low_rate"] = latency_floor_at(
            settings, spec["low_rate"], spec["duration"], work, spec.get("bootstrap")
        )
        Path(spec["out"]).write_text(json.dumps(results, default=str))
        return 0
    if spec.get("low_rate"):
        # One worker (a supervised process) at a paced rate: see bench_detector.latency_at.
        results["low_rate"] = bd.latency_at(settings, 1, spec["low_rate"], spec["duration"], work)
        Path(spec["out"]).write_text(json.dumps(results, default=str))
        return 0
    log = open_bus(settings)
    t0 = time.perf_counter()
    written = bd.write_backlog(log, settings, spec["purchases"], bd.Traffic())
    results["backlog"] = {"records": written, "write_s": round(time.perf_counter() - t0, 2)}
    log.close()
    _EXPECTED[str(settings.data_dir)] = written
    for kind in spec["kinds"]:
        if kind == "floor":
            row = (
                drain_floor_kafka(settings, spec["bootstrap"])
                if spec["backend"] == "kafka"
                else drain_floor_local(settings)
            )
        else:
            # Each detector run: a fresh group and fresh state over the same backlog.
            fresh = variant(bd, settings, champion, work)
            if kind == "shopsentry_rules":
                results["rules_compile_s"] = preload_rules(
                    spec.get("rules", 50), spec.get("entries", 100_000)
                )
            if kind == "shopsentry" and spec.get("profile"):
                row = profiled(fresh, Path(spec["profile"]))
            else:
                row = drain_shopsentry(fresh, entities=kind != "shopsentry_no_entities")
        results[kind] = row
        print(kind, row, flush=True)
    Path(spec["out"]).write_text(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
