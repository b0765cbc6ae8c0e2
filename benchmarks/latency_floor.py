"""The latency floor of :mod:`benchmarks.bench_detector`'s steady low rate: the same paced
producer and traffic, on the same log, into a bare consume → produce loop instead of a
worker, measured the same way (a purchase's log timestamp to the moment its output is
flushed). What any consumer of that log, batching like the stream runtime, pays at that
rate before doing any work: the detector's p99 is read beside it.

The loop runs in a process of its own (like a worker, so it does not share the paced
producer's interpreter) and batches exactly as :class:`~shopsentry.stream.runtime.StreamRuntime`
does: block for the first record, take what is already fetched, linger up to the
runtime's ``linger_ms`` (within ``batch_max_wait_ms``) for more; then one output per
purchase, flush, commit without waiting. On Kafka it uses plain confluent-kafka clients
(acks=all + idempotence, the same linger as shopsentry's producer), on the embedded log
its own consumer and producer.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detector_drain import floor_clients
from benchmarks.detector_workload import (
    Traffic,
    offer,
    percentiles,
    process_cpu_s,
    until,
    warm_up,
)

# (log timestamp ms, key, value, topic, partition, offset) of one polled record
Polled = tuple[int, bytes | None, bytes, str, int, int]


def _linger_ms() -> int:
    from shopsentry.stream.runtime import RuntimeConfig

    return int(next(f.default for f in dataclasses.fields(RuntimeConfig) if f.name == "linger_ms"))


def _kafka_io(settings: Any, bootstrap: str) -> tuple[Any, Any, Any, Any, Any]:
    consumer, producer = floor_clients(settings, bootstrap)
    consumer.subscribe([settings.topics.purchase_events.name])
    consume = consumer.consume

    def poll(wanted: int, timeout: float) -> list[Polled]:
        # As shopsentry's Kafka consumer: consume(n, timeout) would wait for all n.
        messages = consume(num_messages=wanted, timeout=0)
        if not messages and timeout > 0:
            messages = consume(num_messages=1, timeout=timeout)
            if messages and wanted > 1:
                messages.extend(consume(num_messages=wanted - 1, timeout=0))
        return [
            (m.timestamp()[1], m.key(), m.value(), "", 0, 0) for m in messages if m.error() is None
        ]

    def send(topic: str, value: bytes, key: bytes | None) -> None:
        producer.produce(topic, value, key)

    def commit(batch: list[Polled]) -> None:
        consumer.commit(asynchronous=True)

    return poll, send, producer.flush, commit, consumer.close


def _local_io(settings: Any) -> tuple[Any, Any, Any, Any, Any]:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.bus.base import TopicPartition

    log = open_log(BusConfig.from_settings(settings))
    consumer = log.consumer(
        f"floor-{uuid.uuid4().hex[:8]}",
        [settings.topics.purchase_events.name],
        auto_offset_reset="earliest",
    )
    producer = log.producer()

    def poll(wanted: int, timeout: float) -> list[Polled]:
        return [
            (r.timestamp_ms, r.key, r.value, r.topic, r.partition, r.offset)
            for r in consumer.poll(max_records=wanted, timeout=timeout)
        ]

    def commit(batch: list[Polled]) -> None:
        offsets = {TopicPartition(r[3], r[4]): r[5] + 1 for r in batch}
        consumer.commit(offsets, asynchronous=True)

    def close() -> None:
        consumer.close()
        producer.close()
        log.close()

    return poll, producer.send, producer.flush, commit, close


def _batch(poll: Callable[[int, float], list[Polled]], limit: int, wait_ms: int) -> list[Polled]:
    """One batch as the stream runtime polls it (see ``StreamRuntime._poll_batch``)."""
    batch = poll(limit, 0.2)
    if not batch:
        return batch
    start = time.monotonic()
    deadline = start + wait_ms / 1000
    linger_until = start + min(_LINGER_MS, wait_ms) / 1000
    while len(batch) < limit:
        now = time.monotonic()
        if now >= deadline:
            break
        wanted = limit - len(batch)
        more = poll(wanted, max(0.0, linger_until - now))
        batch.extend(more)
        if len(more) < wanted and time.monotonic() >= linger_until:
            break
    return batch


_LINGER_MS = 5  # replaced by the runtime's own default in the loop's process


def floor_loop(
    settings: Any, bootstrap: str | None, done: Any, batches: Any, stop: Any, out: str
) -> None:
    """The bare loop (in its own process) until ``stop``: ``done`` / ``batches`` count the
    purchases flushed and the batches; the e2e latencies (seconds) go to ``out`` (.npy)."""
    global _LINGER_MS
    _LINGER_MS = _linger_ms()
    poll, send, flush, commit, close = (
        _kafka_io(settings, bootstrap) if bootstrap else _local_io(settings)
    )
    out_topic = settings.topics.decisions.name
    limit, wait_ms = settings.detector.batch_max_records, settings.detector.batch_max_wait_ms
    samples: list[float] = []
    while not stop.is_set():
        batch = _batch(poll, limit, wait_ms)
        if not batch:
            continue
        for _, key, value, *_ in batch:
            send(out_topic, value, key)
        flush()
        durable_ms = time.time() * 1000
        samples.extend((durable_ms - r[0]) / 1000 for r in batch)
        commit(batch)
        with done.get_lock():
            done.value += len(batch)
        with batches.get_lock():
            batches.value += 1
    close()
    np.save(out, np.asarray(samples, dtype=np.float64))


def latency_floor_at(
    settings: Any, rate: float, duration_s: float, work: Path, bootstrap: str | None
) -> dict[str, Any]:
    """The bare loop at ``rate`` purchases/s for ``duration_s``: the fields of
    :func:`~benchmarks.detector_workload.latency_at`'s result."""
    from shopsentry.bus import BusConfig, open_log

    ctx = multiprocessing.get_context("spawn")
    done, batches, stop = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
    out = work / f"floor-latency-{uuid.uuid4().hex[:6]}.npy"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = ctx.Process(
        target=floor_loop, args=(settings, bootstrap, done, batches, stop, str(out)), daemon=True
    )
    proc.start()
    log = open_log(BusConfig.from_settings(settings))
    producer, traffic = log.producer(), Traffic()
    try:
        warm = warm_up(producer, settings, traffic, lambda: [done.value])[0]
        warm_batches = batches.value
        cpu0 = process_cpu_s(proc.pid)
        sent, offered_s, wall0 = offer(producer, settings, traffic, rate, duration_s)
        until(lambda: done.value >= warm + sent, offered_s + 60)
        cpu_s = process_cpu_s(proc.pid) - cpu0
        busy_s = time.monotonic() - wall0
        paced_batches = batches.value - warm_batches
    finally:
        stop.set()
        proc.join(60)
        log.close()
    lat = np.load(out)[warm:] * 1000
    result = {
        "offered_per_s": rate,
        "sent": sent,
        "achieved_per_s": round(sent / offered_s, 1),
        "samples": int(lat.size),
        "workers": 1,
        "cpu_us_per_purchase": round(cpu_s / sent * 1e6, 1),
        "purchases_per_batch": round(sent / paced_batches, 1) if paced_batches else None,
        "cpu_share_of_a_core": round(cpu_s / busy_s, 3),
    }
    return result | percentiles(lat)
