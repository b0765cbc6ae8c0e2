"""Produce and consume throughput through a real single-node Apache Kafka broker, from
one Python process, beside the embedded log's figures (``bench_log``) when present.

    .venv/bin/python -m benchmarks.bench_kafka [--events 200000] [--repeat 3]
                                              [--bootstrap HOST:PORT]

Without ``--bootstrap`` a KRaft node is started on 127.0.0.1 with the jars from
``make kafka-jars`` (and stopped at the end). The Python process is pinned to one CPU
(as in ``bench_log``); the broker JVM runs unpinned, so on a 2-core machine it mostly
gets the other core.

- produce: ``Producer.send`` of the same real encoded ``Purchase`` events as
  ``bench_log`` (~400 bytes, keyed by user_id) with acks=all + idempotence + lz4 (the
  shipped defaults), ``flush()`` every 5,000 events, timed until the last flush returned
  (every event acknowledged). Also with one flush at the end (streaming).
- consume: a consumer-group member ``poll(5000)`` over the 3 partitions, building
  ``Record`` objects, with a synchronous ``commit()`` after every poll.

Results go to ``benchmarks/results/bench_kafka.{json,md}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import confluent_kafka

from shopsentry.bus.base import TopicSpec
from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
FLUSH_EVERY = 5_000
POLL = 5_000


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "shopsentry_kafka_launcher", ROOT / "scripts" / "kafka" / "cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_events(n: int) -> list[tuple[bytes, bytes]]:
    """The same (key, value) events as bench_log, so the figures compare."""
    from benchmarks.bench_log import make_events as log_events

    return log_events(n)


def bench_produce(
    log: KafkaLog, topic: str, events: list[tuple[bytes, bytes]], every: int
) -> float:
    producer = log.producer()
    send, flush = producer.send, producer.flush
    send(topic, events[0][1], events[0][0])  # warm up: metadata and connections
    flush()
    t0 = time.perf_counter()
    for i, (key, value) in enumerate(events, 1):
        send(topic, value, key)
        if every and i % every == 0:
            flush(120)
    flush(120)
    took = time.perf_counter() - t0
    producer.close()
    return took


def bench_consume(log: KafkaLog, topic: str, expected: int) -> float:
    consumer = log.consumer(f"bench-{uuid.uuid4().hex[:6]}", [topic])
    first = consumer.poll(POLL, 10.0)  # joining the group is not throughput
    got = len(first)
    consumer.commit()
    t0 = time.perf_counter()
    stalls = 0
    while got < expected:
        batch = consumer.poll(POLL, 1.0)
        if not batch:
            stalls += 1
            if stalls > 10:
                raise RuntimeError(f"consumer stalled at {got} of {expected}")
            continue
        got += len(batch)
        consumer.commit()
    took = time.perf_counter() - t0
    consumer.close()
    return took * expected / max(1, expected - len(first))  # scaled to every event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", default=None, help="use a running broker instead")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last)")
    parser.add_argument("--no-write", action="store_true", help="Do not write benchmarks/results/.")
    args = parser.parse_args()

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    node = None
    startup_s = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        launcher = load_launcher()
        node = launcher.KafkaCluster(Path(tempfile.mkdtemp(prefix="bench-kafka-")), brokers=1)
        startup_s = node.start()
        bootstrap = node.bootstrap
    os.sched_setaffinity(0, {cpu})  # after the JVM started, so it is not pinned with us
    try:
        events = make_events(args.events)
        mb = sum(len(k) + len(v) for k, v in events) / 1e6
        mean_bytes = statistics.mean(len(v) for _, v in events[:20_000])
        settings = KafkaSettings()
        log = KafkaLog(bootstrap, settings)
        runs: dict[str, list[float]] = {"produce": [], "produce_streaming": [], "consume": []}
        for _ in range(args.repeat):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            log.create_topics([TopicSpec(topic, 3, replication_factor=1, min_insync_replicas=1)])
            runs["produce"].append(bench_produce(log, topic, events, FLUSH_EVERY))
            runs["consume"].append(bench_consume(log, topic, len(events) + 1))
            streaming = f"bench-{uuid.uuid4().hex[:8]}"
            log.create_topics(
                [TopicSpec(streaming, 3, replication_factor=1, min_insync_replicas=1)]
            )
            runs["produce_streaming"].append(bench_produce(log, streaming, events, 0))
    finally:
        if node is not None:
            node.stop_all()

    def rate(key: str) -> dict[str, float]:
        rates = [args.events / s for s in runs[key]]
        return {
            "median_events_per_s": round(statistics.median(rates)),
            "best_events_per_s": round(max(rates)),
            "median_mb_per_s": round(statistics.median(rates) * mb / args.events, 1),
        }

    embedded = None
    log_results = RESULTS / "bench_log.json"
    if log_results.exists():
        previous = json.loads(log_results.read_text())
        embedded = {
            "figures": previous.get("figures", {}).get("embedded_log"),
            "command": previous.get("command"),
            "date": previous.get("date"),
            "events": previous.get("events"),
            "fsync_policy": previous.get("fsync_policy"),
        }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    result = {
        "benchmark": "bench_kafka",
        "command": " ".join([".venv/bin/python -m benchmarks.bench_kafka", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "nproc": os.cpu_count(),
        "pinned_cpu": cpu,
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "broker": "Apache Kafka 4.1.1, single KRaft node (broker+controller), -Xmx512m",
        "broker_startup_s": round(startup_s, 1) if startup_s is not None else None,
        "events": args.events,
        "mean_event_bytes": round(mean_bytes, 1),
        "repeat": args.repeat,
        "producer": {
            "acks": "all",
            "enable.idempotence": True,
            "compression": settings.compression_type,
            "linger_ms": settings.linger_ms,
        },
        "figures": {
            "kafka": {
                "produce_flush_every_5000": rate("produce"),
                "produce_one_flush_at_end": rate("produce_streaming"),
                "consume_commit_every_poll": rate("consume"),
            },
            "embedded_log": embedded,
        },
    }
    print(json.dumps(result["figures"], indent=2))
    if args.no_write:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_kafka.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "bench_kafka.md").write_text(render_md(result))


def render_md(r: dict) -> str:  # type: ignore[type-arg]
    k = r["figures"]["kafka"]
    lines = [
        "# bench_kafka — throughput through a real Kafka broker from one Python process",
        "",
        f"Command: `{r['command']}`",
        f"Date: {r['date']} · commit {r['commit']} · nproc {r['nproc']} · Python {r['python']}"
        f" · confluent-kafka {r['confluent_kafka']} (librdkafka {r['librdkafka']})",
        f"Broker: {r['broker']}, started (format + start) in {r['broker_startup_s']} s",
        f"Events: {r['events']:,} encoded Purchase events, mean {r['mean_event_bytes']} bytes,"
        f" keyed by user_id, 3 partitions; median of {r['repeat']} runs."
        " Python pinned to one CPU; the broker JVM unpinned.",
        f"Producer: acks=all, idempotent, {r['producer']['compression']},"
        f" linger.ms={r['producer']['linger_ms']}.",
        "",
        "| backend | measure | events/s (median) | best | MB/s (median) |",
        "|---|---|---:|---:|---:|",
    ]
    for label, key in (
        ("produce, flush() every 5,000 (all acked)", "produce_flush_every_5000"),
        ("produce, one flush() at the end", "produce_one_flush_at_end"),
        ("consume, group member, commit() every poll", "consume_commit_every_poll"),
    ):
        f = k[key]
        lines.append(
            f"| Kafka | {label} | {f['median_events_per_s']:,} | {f['best_events_per_s']:,}"
            f" | {f['median_mb_per_s']} |"
        )
    emb = r["figures"]["embedded_log"]
    if emb and emb.get("figures"):
        for label, key in (
            ("produce, flush() every 5,000", "produce"),
            ("consume, commit() every poll", "consume"),
        ):
            f = emb["figures"].get(key) or {}
            if f:
                lines.append(
                    f"| embedded log ({emb.get('fsync_policy')}) | {label} |"
                    f" {f['median_events_per_s']:,} | {f['best_events_per_s']:,}"
                    f" | {f['median_mb_per_s']} |"
                )
        lines += ["", f"Embedded-log figures from `{emb.get('command')}` ({emb.get('date')})."]
    else:
        lines += [
            "",
            "No `benchmarks/results/bench_log.json` yet: run `python -m benchmarks.bench_log`"
            " for the embedded log's figures beside these.",
        ]
    lines += [
        "",
        "Kafka's figures include the network round trips to a separate JVM on the same",
        "2-core machine; the embedded log writes SQLite in-process. Neither is a timed test.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
