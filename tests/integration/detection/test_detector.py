"""The hot path against real backends: the embedded log with SQLite state, and Apache
Kafka with Redis state. Worker processes are real (spawned by the supervisor)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from shopsentry.bus import open_log
from shopsentry.config import Settings
from shopsentry.detection.runner import Supervisor
from shopsentry.detection.worker import WorkerOptions
from shopsentry.events.schema import ALERT, DECISION, Decision
from shopsentry.features.state import PurchaseState
from shopsentry.features.state_store import PURCHASE_NS, open_store

from .conftest import (
    Champion,
    free_port,
    metric,
    produce,
    promote,
    read_topic,
    scrape,
    simulator,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
US = 1_000_000


def idle_s(settings: Settings) -> float:
    # Long enough for a survivor to outwait the group's failure detection.
    return 15.0 if settings.kafka_bootstrap else 6.0


def records_of(sim, settings: Settings):  # type: ignore[no-untyped-def]
    """(topic, key, value, ts_us, event_type, user_id, event_id) in occurred_at order."""
    t = settings.topics
    for rec in sim.records():
        topic = t.purchase_events.name if rec.event_type == "purchase" else t.user_behavior.name
        yield (
            topic,
            rec.user_id.encode(),
            rec.raw,
            rec.ts_us,
            rec.event_type,
            rec.user_id,
            rec.event_id,
        )


def decisions_of(settings: Settings) -> list[Decision]:
    log = open_log(settings)
    try:
        return [
            DECISION.validate_json(r.value) for r in read_topic(log, settings.topics.decisions.name)
        ]
    finally:
        log.close()


def lag_is_zero(settings: Settings, expected_records: int) -> bool:
    log = open_log(settings)
    try:
        lags = log.group_lag(settings.detector.group_id)
    finally:
        log.close()
    committed = sum(p.committed or 0 for p in lags)
    return committed >= expected_records and all(p.lag == 0 for p in lags)


def run_supervisor(settings: Settings, workers: int, **options: object) -> Supervisor:
    supervisor = Supervisor(settings, workers, WorkerOptions(**options))  # type: ignore[arg-type]
    supervisor.start()
    return supervisor


def test_simulated_fraud_is_caught_at_the_rate_the_report_promised(
    backend: Settings, champion: Champion, request: pytest.FixtureRequest
) -> None:
    """21 simulated days: 14 replayed as a backlog (warm-up state), the 7-day validation
    week streamed at 30,000x real time through 2 workers; recall and false-positive rate at
    the threshold must match what training reported on the same week."""
    settings = backend
    request.applymarker(
        pytest.mark.xfail(
            reason="open defect (issue 11): since the entity features, the streamed week's "
            "recall at 30,000x through 2 workers sometimes comes out 0.26 against the 0.36 "
            "training reported (10 of 39 frauds vs 14), on both backends; the shared entity "
            "state's cross-worker freshness at that speed is the suspect",
            strict=False,
        )
    )
    promote(settings, champion, "1")
    validation_start = datetime.fromisoformat(champion.report["data"]["validation_start"])
    cutoff_us = round(validation_start.timestamp() * US)
    rows = list(records_of(simulator(), settings))
    warmup = [r for r in rows if r[3] < cutoff_us]
    stream = [r for r in rows if r[3] >= cutoff_us]
    log = open_log(settings)
    produce(log, ((t, k, v) for t, k, v, *_ in warmup))
    supervisor = run_supervisor(settings, 2, exit_when_idle_s=idle_s(settings))
    try:
        wait_for(lambda: lag_is_zero(settings, len(warmup)), 240, "the warm-up backlog to drain")
        speed = 30_000.0
        producer = log.producer()
        wall0, sim0 = time.monotonic(), stream[0][3]
        for topic, key, value, ts_us, *_ in stream:
            due = (ts_us - sim0) / US / speed
            if due > time.monotonic() - wall0 + 0.02:
                producer.flush()
                time.sleep(max(0.0, due - (time.monotonic() - wall0)))
            producer.send(topic, value, key)
        producer.close()
        statuses = supervisor.wait(timeout=300)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)
    assert [s.exitcode for s in statuses] == [0, 0]

    purchases = {r[6] for r in rows if r[4] == "purchase"}
    decisions = decisions_of(settings)
    by_id = {d.event_id: d for d in decisions}
    assert set(by_id) == purchases and len(decisions) == len(purchases)

    labels = pq.read_table(champion.history / "labels.parquet").to_pandas()
    fraud = set(labels.loc[labels.is_fraud, "event_id"])
    week = [d for d in decisions if d.occurred_at >= validation_start]
    assert len(week) == champion.report["data"]["validation_rows"]
    y = np.array([d.event_id in fraud for d in week])
    flagged = np.array([d.band != "approve" for d in week])
    recall, fpr = flagged[y].mean(), flagged[~y].mean()
    promised = champion.report["model"]
    assert recall == pytest.approx(promised["recall_at_threshold"], abs=0.1)
    assert fpr <= promised["fpr_at_threshold"] + 0.01

    alerts = [
        ALERT.validate_json(r.value) for r in read_topic(log, settings.topics.fraud_alerts.name)
    ]
    log.close()
    assert {a.event_id for a in alerts} == {d.event_id for d in decisions if d.band != "approve"}
    assert len(alerts) > 0 and all(a.top_features for a in alerts)
    assert all(d.model_version == "1" for d in decisions)


def test_kill_9_of_one_worker_loses_nothing_and_counts_nothing_twice(
    backend: Settings, champion: Champion
) -> None:
    settings = backend.model_copy(
        update={"detector": backend.detector.model_copy(update={"batch_max_records": 50})}
    )
    promote(settings, champion, "1")
    rows = list(records_of(simulator(days=4), settings))
    log = open_log(settings)
    produce(log, ((t, k, v) for t, k, v, *_ in rows))
    supervisor = run_supervisor(settings, 2, exit_when_idle_s=idle_s(settings))
    try:

        def progressed() -> bool:
            lags = log.group_lag(settings.detector.group_id)
            return sum(p.committed or 0 for p in lags) > len(rows) // 10

        wait_for(progressed, 240, "the workers to get going")
        victim = supervisor.processes[1].pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        statuses = supervisor.wait(timeout=300)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)
    # The supervisor restarted the killed worker; it then ran until idle like the other.
    assert statuses[1].restarts == 1 and statuses[1].exitcode == 0
    assert statuses[0].exitcode == 0

    purchases = [r for r in rows if r[4] == "purchase"]
    decisions = decisions_of(settings)
    ids = Counter(d.event_id for d in decisions)
    assert set(ids) == {r[6] for r in purchases}
    # A duplicate can only come from a batch saved but not yet confirmed committed at the
    # kill: offsets are committed without waiting, so each input partition the victim owned
    # may point at its own last batch, re-produced from the outbox byte for byte.
    inputs = settings.topics.purchase_events.partitions + settings.topics.user_behavior.partitions
    assert sum(ids.values()) - len(ids) <= settings.detector.batch_max_records * inputs
    probs: dict[str, set[float]] = {}
    for d in decisions:
        probs.setdefault(d.event_id, set()).add(d.probability)
    assert all(len(p) == 1 for p in probs.values())

    store = open_store(settings)
    counts = {user: PurchaseState.from_bytes(raw).n for user, raw in store.items(PURCHASE_NS)}
    store.close()
    assert counts == dict(Counter(r[5] for r in purchases))
    log.close()


def test_malformed_events_are_dead_lettered_and_the_worker_goes_on(
    backend: Settings, champion: Champion
) -> None:
    settings = backend
    promote(settings, champion, "1")
    rows = list(records_of(simulator(days=0.5), settings))[:400]
    good = [r for r in rows if r[4] == "purchase"]
    template = good[0][2]
    pt, bt = settings.topics.purchase_events.name, settings.topics.user_behavior.name
    bad = {
        "bad json": (pt, b"u-x", b'{"event_type": "purchase", "amount": '),
        "wrong type": (pt, good[0][1], _with(template, item_count="lots")),
        "negative amount": (pt, good[0][1], _with(template, amount=-12.5)),
        "oversized": (pt, good[0][1], template[:-1] + b',"pad":"' + b"x" * 70_000 + b'"}'),
        "purchase on behaviour topic": (bt, good[0][1], template),
    }
    log = open_log(settings)
    half = len(rows) // 2
    produce(
        log,
        [
            *((t, k, v) for t, k, v, *_ in rows[:half]),
            *bad.values(),
            *((t, k, v) for t, k, v, *_ in rows[half:]),
        ],
    )
    supervisor = run_supervisor(settings, 1, exit_when_idle_s=4.0)
    statuses = supervisor.wait(timeout=240)
    assert statuses[0].exitcode == 0

    dead = read_topic(log, settings.topics.dead_letter.name)
    log.close()
    assert sorted(r.value for r in dead) == sorted(v for _, _, v in bad.values())
    reasons = {r.value: r.header("dlq.reason").decode() for r in dead}  # type: ignore[union-attr]
    assert "amount" in reasons[bad["negative amount"][2]]
    assert "item_count" in reasons[bad["wrong type"][2]]
    assert "exceeds" in reasons[bad["oversized"][2]]
    assert "purchase" in reasons[bad["purchase on behaviour topic"][2]]
    for r in dead:
        assert r.header("dlq.topic") in (pt.encode(), bt.encode())
        assert r.header("dlq.stage") in (b"decode", b"route")
        assert r.header("dlq.offset") is not None and r.header("dlq.partition") is not None
    # The bad purchase carried an already-used event id: the good one still has its decision.
    assert {d.event_id for d in decisions_of(settings)} == {r[6] for r in good}
    assert statuses[0].summary is not None and statuses[0].summary.dead_lettered == len(bad)


def _with(raw: bytes, **fields: object) -> bytes:
    import orjson

    return orjson.dumps({**orjson.loads(raw), **fields})


def test_hot_reload_mid_stream_loses_nothing(
    backend: Settings, champion: Champion, tmp_path: Path
) -> None:
    settings = backend
    promote(settings, champion, "1")
    rows = list(records_of(simulator(days=1), settings))
    half = len(rows) // 2
    port = free_port()
    log = open_log(settings)
    produce(log, ((t, k, v) for t, k, v, *_ in rows[:half]))
    supervisor = run_supervisor(settings, 1, exit_when_idle_s=8.0, metrics_port=port)
    try:

        def processed() -> float:
            text = scrape(port)
            return sum(
                metric(text, f'shopsentry_events_processed_total{{topic="{t}"}}')
                for t in (settings.topics.purchase_events.name, settings.topics.user_behavior.name)
            )

        wait_for(lambda: _safe(processed) >= half, 240, "the first half to be processed")
        # A broken promotion (checksum mismatch) is refused; version 1 keeps serving.
        promote(settings, champion, "2", sha256="0" * 64)
        wait_for(
            lambda: metric(scrape(port), 'shopsentry_model_reloads_total{outcome="failed"}') >= 1,
            60,
            "the broken version to be refused",
        )
        assert metric(scrape(port), 'shopsentry_model_version_info{version="1"}') == 1
        promote(settings, champion, "3")
        wait_for(
            lambda: metric(scrape(port), 'shopsentry_model_version_info{version="3"}') == 1,
            60,
            "version 3 to be serving",
        )
        # Lag per owned partition is refreshed in the background every few seconds.
        wait_for(lambda: "shopsentry_consumer_lag{" in scrape(port), 30, "consumer lag gauges")
        produce(log, ((t, k, v) for t, k, v, *_ in rows[half:]))
        statuses = supervisor.wait(timeout=240)
    finally:
        supervisor.stop()
        supervisor.wait(timeout=30)
        log.close()
    assert statuses[0].exitcode == 0
    decisions = decisions_of(settings)
    purchases = {r[6] for r in rows if r[4] == "purchase"}
    assert len(decisions) == len(purchases) and {d.event_id for d in decisions} == purchases
    versions = Counter(d.model_version for d in decisions)
    assert set(versions) == {"1", "3"}
    assert statuses[0].summary is not None and statuses[0].summary.model_versions == ["1", "3"]


def _safe(fn) -> float:  # type: ignore[no-untyped-def]
    try:
        return float(fn())
    except OSError:  # the endpoint is not up yet
        return 0.0
