"""Simulator: rate, determinism, valid canonical events, fraud share, every scenario and
hard case present, labels late and out of band, and the outputs (files, log, CLI)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from shopsentry.errors import ConfigError
from shopsentry.events.codec import decode, decode_as, encode
from shopsentry.features import FEATURE_NAMES, offline_features
from shopsentry.simulator import (
    FRAUD_SCENARIOS,
    LEGIT_CASES,
    Simulator,
    SimulatorConfig,
    publish,
    write_history,
)
from shopsentry.simulator.rings import ENTITY_SCENARIOS

START = datetime(2026, 3, 2, tzinfo=UTC)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def rate_run(seed: int = 1, rate: float = 3000.0, hours: float = 1.0, **kw: object) -> Simulator:
    return Simulator(
        SimulatorConfig(
            users=1000, start=START, duration_s=hours * 3600, events_per_hour=rate, seed=seed, **kw
        )
    )


@pytest.fixture(scope="module")
def history() -> Simulator:
    """Four days of 5,000 users with a raised fraud share, so every per-user scenario
    shows up often enough to see its signals."""
    return Simulator(
        SimulatorConfig(
            users=5000,
            start=START,
            duration_s=4 * 86400,
            events_per_hour=None,
            fraud_share=0.08,
            seed=11,
        )
    )


@pytest.fixture(scope="module")
def history_frame(history: Simulator, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    files = write_history(history, tmp_path_factory.mktemp("hist"), fmt="parquet")
    return offline_features(files.events_path)


@pytest.mark.parametrize(("rate", "hours"), [(3000.0, 1.0), (1000.0, 2.0), (20_000.0, 0.5)])
def test_rate_is_met(rate: float, hours: float) -> None:
    sim = rate_run(rate=rate, hours=hours)
    expected = rate * hours
    assert abs(len(sim) - expected) <= 0.05 * expected
    times = [r.ts_us for r in sim.records()]
    assert times == sorted(times)
    assert times[0] >= sim.config.start_us and times[-1] < sim.config.end_us
    # Traffic spreads over the window rather than bunching at one end.
    halves = np.histogram(times, bins=2, range=(sim.config.start_us, sim.config.end_us))[0]
    assert min(halves) > 0.3 * len(times)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = [r.raw for r in rate_run(seed=5).records()]
    b = [r.raw for r in rate_run(seed=5).records()]
    c = [r.raw for r in rate_run(seed=6).records()]
    assert a == b
    assert a != c
    labels_a = [encode(x) for x in rate_run(seed=5, fraud_share=0.1).labels()]
    labels_b = [encode(x) for x in rate_run(seed=5, fraud_share=0.1).labels()]
    assert labels_a == labels_b and labels_a


def test_every_event_is_valid_and_canonical() -> None:
    sim = rate_run(seed=2, rate=5000)
    kinds = Counter()
    ids: set[str] = set()
    for record in sim.records():
        event = decode(record.raw)
        assert encode(event) == record.raw  # exactly what the codec writes
        assert (event.event_id, event.event_type, event.user_id, event.source) == (
            record.event_id,
            record.event_type,
            record.user_id,
            record.source,
        )
        assert int(event.occurred_at.timestamp() * 1_000_000) == pytest.approx(record.ts_us, abs=1)
        kinds[event.event_type] += 1
        ids.add(event.event_id)
    assert len(ids) == len(sim)
    assert {"purchase", "page_view", "search", "add_to_cart", "login"} <= set(kinds)
    assert [e.event_type for e in sim.events()] == [r.event_type for r in sim.records()]


def test_sources_and_users_mix(history: Simulator) -> None:
    sources = Counter(r.source for r in history.records() if r.is_purchase)
    assert set(sources) == {"web", "mobile", "pos"}
    assert history.stats["users"] > 1500


def test_events_carry_no_label(history: Simulator) -> None:
    for record in history.records():
        doc = orjson.loads(record.raw)
        assert not {"is_fraud", "scenario", "label", "fraud"} & set(doc)
        assert b"fraud" not in record.raw and b"scenario" not in record.raw


@pytest.mark.parametrize("share", [0.015, 0.04])
def test_fraud_share_within_tolerance(share: float) -> None:
    sim = Simulator(
        SimulatorConfig(
            users=4000,
            start=START,
            duration_s=3 * 86400,
            events_per_hour=None,
            fraud_share=share,
            seed=3,
        )
    )
    stats = sim.stats
    assert stats["purchases"] > 2000
    observed = stats["fraud_purchases"] / stats["purchases"]
    assert share * 0.85 <= observed <= share * 1.15
    labels = sim.labels()
    assert len(labels) == stats["fraud_purchases"]
    assert all(label.is_fraud for label in labels)


def test_no_fraud_when_share_is_zero() -> None:
    sim = rate_run(fraud_share=0.0)
    assert sim.stats["fraud_purchases"] == 0
    assert sim.labels() == []


def test_every_scenario_and_hard_case_is_present(wide_history: Simulator) -> None:
    stats = wide_history.stats
    assert set(stats["fraud_by_scenario"]) == set(FRAUD_SCENARIOS)
    assert set(stats["legit_cases"]) == set(LEGIT_CASES)
    # Among the per-user scenarios (the entity-only ones are all hard: test_rings.py).
    per_user = {k: v for k, v in stats["fraud_by_scenario"].items() if k not in ENTITY_SCENARIOS}
    hard = sum(v for k, v in per_user.items() if k.endswith(("_quiet", "_ordinary", "_subtle")))
    assert 0.15 <= hard / sum(per_user.values()) <= 0.5
    assert stats["fraud_accounts"] > 0  # card testing / stolen cards on fresh accounts


def test_labels_are_late_and_point_at_purchases(history: Simulator) -> None:
    purchases = {r.event_id: r for r in history.records() if r.is_purchase}
    labels = history.labels()
    delays = []
    for label in labels:
        record = purchases[label.event_id]
        assert label.user_id == record.user_id and label.source == record.source
        assert label.occurred_at.timestamp() == pytest.approx(record.ts_us / 1e6, abs=1e-6)
        assert label.known_at > label.occurred_at
        assert label.scenario in FRAUD_SCENARIOS
        delays.append((label.known_at - label.occurred_at) / timedelta(days=1))
        assert decode_as("label", encode(label)) == label
    delays_a = np.array(delays)
    assert ((delays_a >= 1) & (delays_a <= 30)).mean() >= 0.7  # mostly chargebacks, 1-30 days
    assert (delays_a < 1).any() and (delays_a > 30).any()  # a few reviews, a few slow banks
    assert delays_a.max() <= 60


def test_legit_labels_after_clearance() -> None:
    sim = rate_run(seed=4, legit_labels=True)
    labels = sim.labels()
    assert len(labels) == sim.stats["purchases"]
    legit = [x for x in labels if not x.is_fraud]
    assert legit and all(x.known_at - x.occurred_at >= timedelta(days=30) for x in legit)
    assert all(x.scenario is None or x.scenario in LEGIT_CASES for x in legit)


def test_scenarios_leave_their_signals(history: Simulator, history_frame) -> None:  # type: ignore[no-untyped-def]
    """Each scenario shows up in the features the way its story says."""
    scenario = {x.event_id: x.scenario for x in history.labels()}
    X = history_frame.X
    kinds = np.array([scenario.get(e, "") for e in history_frame.event_ids])

    def rows(name: str) -> np.ndarray:
        return X[kinds == name]

    legit = X[kinds == ""]
    testing = rows("card_testing")
    assert np.median(testing[:, COL["amount"]]) < 10
    assert (testing[:, COL["purchases_10m"]] >= 1).mean() > 0.7
    assert (testing[:, COL["cards_24h"]] >= 2).mean() > 0.6
    ato = rows("account_takeover")
    assert (ato[:, COL["minutes_since_new_device_login"]] < 6 * 60).mean() > 0.6
    assert np.nanmedian(ato[:, COL["amount_ratio"]]) > 2.5
    stolen = rows("stolen_card")
    assert (stolen[:, COL["new_card"]] == 1).all()
    burst = rows("velocity_burst")
    assert (burst[:, COL["purchases_1h"]] >= 1).mean() > 0.6
    night = rows("unusual_hours")
    assert np.nanmedian(night[:, COL["hour_share_activity"]]) < np.nanmedian(
        legit[:, COL["hour_share_activity"]]
    )
    # Hard fraud looks ordinary on the obvious signals...
    quiet = rows("account_takeover_quiet")
    assert (quiet[:, COL["minutes_since_address_change"]] < 60).mean() < 0.1
    assert np.nanmedian(quiet[:, COL["amount_ratio"]]) < np.nanmedian(ato[:, COL["amount_ratio"]])
    ordinary = rows("stolen_card_ordinary")
    assert (ordinary[:, COL["new_device"]] == 0).mean() > 0.8
    assert np.nanmedian(ordinary[:, COL["amount_ratio"]]) < 2.5
    # Part of it pays with a card that was never "added": no tell-tale event before.
    assert np.isnan(ordinary[:, COL["card_added_minutes"]]).any()
    # A shop's terminal is no free pass: card-present fraud happens at POS, the cloned
    # card at the user's own home-country store.
    present = np.vstack([rows("card_present"), rows("card_present_cloned")])
    assert len(present) and (present[:, COL["source"]] == 2.0).all()
    cloned = rows("card_present_cloned")
    assert len(cloned) and np.nanmax(cloned[:, COL["country_ne_home"]]) == 0
    # ...while some legitimate purchases trip each simple rule.
    assert (legit[:, COL["amount_ratio"]] > 4).sum() > 10
    assert (legit[:, COL["billing_ne_shipping"]] == 1).sum() > 10
    assert (legit[:, COL["card_added_minutes"]] < 15).sum() > 5
    assert (legit[:, COL["minutes_since_new_device_login"]] < 60).sum() > 20
    assert (legit[:, COL["source"]] == 2.0).sum() > 100
    assert (legit[:, COL["minutes_since_new_country_login"]] < 24 * 60).sum() > 5
    assert (legit[:, COL["purchases_10m"]] >= 1).sum() > 10


def test_hard_legit_cases_are_labelled_when_asked() -> None:
    sim = Simulator(
        SimulatorConfig(
            users=2000,
            start=START,
            duration_s=3 * 86400,
            events_per_hour=None,
            seed=8,
            legit_labels=True,
        )
    )
    cases = Counter(x.scenario for x in sim.labels() if not x.is_fraud and x.scenario)
    assert {"travel", "gift_abroad", "big_ticket", "split_order"} <= set(cases)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig(users=0)
    with pytest.raises(ConfigError):
        SimulatorConfig(fraud_share=0.9)
    with pytest.raises(ConfigError):
        SimulatorConfig(start=datetime(2026, 1, 1))  # no zone
    with pytest.raises(ConfigError):
        SimulatorConfig(duration_s=0)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_write_history_files(tmp_path: Path, fmt: str) -> None:
    sim = rate_run(seed=9, fraud_share=0.1)
    files = write_history(sim, tmp_path / "out", fmt=fmt)  # type: ignore[arg-type]
    assert files.events == len(sim) and files.labels == len(sim.labels())
    if fmt == "parquet":
        table = pq.read_table(files.events_path)
        assert table.column_names == [
            "event_id",
            "event_type",
            "user_id",
            "source",
            "occurred_at",
            "raw_json",
        ]
        assert table.num_rows == len(sim)
        raws = [x.encode() for x in table.column("raw_json").to_pylist()]
        labels = pq.read_table(files.labels_path)
        assert {
            "event_id",
            "order_id",
            "user_id",
            "is_fraud",
            "scenario",
            "label_source",
            "occurred_at",
            "known_at",
        } <= set(labels.column_names)
        assert labels.num_rows == files.labels
    else:
        raws = files.events_path.read_bytes().splitlines()
        label_lines = files.labels_path.read_bytes().splitlines()
        assert [decode_as("label", x) for x in label_lines] == sim.labels()
    assert raws == [r.raw for r in sim.records()]


def test_publish_routes_by_type_keyed_by_user(settings) -> None:  # type: ignore[no-untyped-def]
    from shopsentry.bus import BusConfig, open_log

    sim = rate_run(seed=12, rate=600, fraud_share=0.2)
    log = open_log(BusConfig.from_settings(settings))
    try:
        result = publish(sim, log, settings.topics)
        assert result.events == len(sim)
        assert result.labels == len(sim.labels())
        topics = settings.topics
        names = [topics.purchase_events.name, topics.user_behavior.name, topics.labels.name]
        consumer = log.consumer(None, names)
        got: list = []
        for _ in range(50):
            batch = consumer.poll(max_records=5000, timeout=0.2)
            got.extend(batch)
            if len(got) >= result.events + result.labels:
                break
        consumer.close()
    finally:
        log.close()
    by_topic = Counter(r.topic for r in got)
    assert by_topic[topics.purchase_events.name] == result.purchases
    assert by_topic[topics.user_behavior.name] == result.behaviour
    assert by_topic[topics.labels.name] == result.labels
    for record in got:
        if record.topic != topics.labels.name:
            event = decode(record.value)
            assert record.key == event.user_id.encode()
            assert (event.event_type == "purchase") == (record.topic == topics.purchase_events.name)


def test_publish_labels_sends_only_the_labels_keyed_by_user(settings) -> None:  # type: ignore[no-untyped-def]
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.simulator import publish_labels

    sim = rate_run(seed=12, rate=600, fraud_share=0.2)
    log = open_log(BusConfig.from_settings(settings))
    try:
        sent = publish_labels(sim, log, settings.topics)
        consumer = log.consumer(None, [settings.topics.labels.name])
        got: list = []
        for _ in range(50):
            got.extend(consumer.poll(max_records=5000, timeout=0.2))
            if len(got) >= sent:
                break
        consumer.close()
    finally:
        log.close()
    labels = sim.labels()
    assert sent == len(labels) > 0
    assert sorted(r.key for r in got) == sorted(lb.user_id.encode() for lb in labels)


def test_publish_paces_on_the_clock(settings) -> None:  # type: ignore[no-untyped-def]
    """With --speed N, simulated time runs N x the (fake) wall clock."""
    from shopsentry.bus import BusConfig, open_log

    sim = rate_run(seed=13, rate=200, hours=1.0)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    log = open_log(BusConfig.from_settings(settings))
    try:
        publish(
            sim, log, settings.topics, speed=60.0, labels=False, clock=lambda: now[0], sleep=sleep
        )
    finally:
        log.close()
    assert sum(waits) == pytest.approx(3600 / 60.0, rel=1e-6)  # one simulated hour = 60 s
    assert len(waits) > 50  # sent in step with the clock, not all at once


def test_cli_writes_files_and_refuses_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shopsentry.cli import app

    runner = CliRunner()
    out = tmp_path / "hist"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--days",
            "0.5",
            "--users",
            "300",
            "--seed",
            "1",
            "--out",
            str(out),
            "--format",
            "jsonl",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "events.jsonl").stat().st_size > 0 and (out / "labels.jsonl").exists()
    bad = runner.invoke(app, ["simulate", "--out", str(out), "--format", "xml"])
    assert isinstance(bad.exception, ConfigError) and "xml" in str(bad.exception)
    bad = runner.invoke(app, ["simulate", "--out", str(out), "--start", "yesterday"])
    assert isinstance(bad.exception, ConfigError) and "start" in str(bad.exception)
    bad = runner.invoke(app, ["simulate", "--out", str(out), "--rate", "lots"])
    assert isinstance(bad.exception, ConfigError)


def test_cli_publishes_to_the_local_log(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shopsentry.bus import BusConfig, open_log
    from shopsentry.cli import app
    from shopsentry.config import Settings

    data = tmp_path / "data"
    args = [
        "--data-dir",
        str(data),
        "simulate",
        "--rate",
        "3000/h",
        "--duration",
        "20m",
        "--as-fast-as-possible",
    ]
    result = CliRunner().invoke(app, [*args, "--seed", "4", "--fraud-share", "0.1"])
    assert result.exit_code == 0, result.output
    assert "published" in result.output
    log = open_log(BusConfig.from_settings(Settings(data_dir=data)))
    try:
        ends = {
            name: sum(p.end_offset for p in log.describe_topic(name).partitions)
            for name in ("purchase-events", "user-behavior", "fraud-labels")
        }
    finally:
        log.close()
    assert 900 <= ends["purchase-events"] + ends["user-behavior"] <= 1100
    assert ends["purchase-events"] > 0 and ends["fraud-labels"] > 0
