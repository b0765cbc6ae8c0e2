"""Features: one definition computed online (state updated event by event, serialised
between events like the detector's store) and offline (point-in-time replay) must give
identical vectors; no feature sees the future; windows have exact boundaries; state
stays bounded."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shopsentry.events.codec import decode, encode
from shopsentry.events.schema import (
    AddressChange,
    AddToCart,
    FailedLogin,
    Login,
    PageView,
    PasswordChange,
    PaymentMethodAdded,
    Purchase,
)
from shopsentry.features import (
    FEATURE_DESCRIPTIONS,
    FEATURE_FAMILIES,
    FEATURE_NAMES,
    GROUPS,
    BehaviorState,
    PurchaseState,
    StateDecodeError,
    events_from_table,
    feature_matrix,
    feature_vector,
    observe_behavior,
    observe_purchase,
    offline_features,
    purchase_step,
)
from shopsentry.features.definitions import GROUP_SLICES, NO_ENTITIES
from shopsentry.features.offline import HistoryReadError
from shopsentry.features.state import MAX_RECENT, MAX_SEEN
from shopsentry.simulator import Simulator, SimulatorConfig, write_history

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
_seq = iter(range(10**9))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def purchase(seconds: float, user: str = "u-1", **kw: Any) -> Purchase:
    n = next(_seq)
    fields: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "source": "web",
        "user_id": user,
        "occurred_at": at(seconds),
        "order_id": f"or-{n}",
        "amount": 50.0,
        "item_count": 1,
        "payment_method": "card",
        "card_fingerprint": "card-a",
        "device_fingerprint": "dev-a",
        "ip_fingerprint": "ip-a",
        "country": "DE",
        "billing_country": "DE",
        "shipping_country": "DE",
        "merchant_category": "books",
    }
    fields.update(kw)
    return Purchase(**fields)


def behaviour(cls: type, seconds: float, user: str = "u-1", **kw: Any) -> Any:
    fields: dict[str, Any] = {
        "event_id": f"ev-{next(_seq)}",
        "source": "web",
        "user_id": user,
        "occurred_at": at(seconds),
        "device_fingerprint": "dev-a",
        "ip_fingerprint": "ip-a",
        "country": "DE",
    }
    fields.update(kw)
    return cls(**fields)


def replay(events: list[Any]) -> list[list[float]]:
    """Online, the simplest way: fresh states, features before observing."""
    p: dict[str, PurchaseState] = {}
    b: dict[str, BehaviorState] = {}
    rows = []
    for e in events:
        if e.event_type == "purchase":
            ps = p.setdefault(e.user_id, PurchaseState.empty())
            rows.append(feature_vector(ps, b.get(e.user_id, BehaviorState.empty()), e))
            observe_purchase(ps, e)
        else:
            observe_behavior(b.setdefault(e.user_id, BehaviorState.empty()), e)
    return rows


def last(events: list[Any]) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, replay(events)[-1], strict=True))


# -- the contract --------------------------------------------------------------------------


def test_names_are_unique_described_and_match_the_vector() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(FEATURE_DESCRIPTIONS) == set(FEATURE_NAMES)
    # The design's eight features are all there.
    assert {
        "amount",
        "hour_of_day",
        "day_of_week",
        "user_avg_amount",
        "purchase_frequency",
        "days_since_last_purchase",
        "item_count",
        "payment_method",
    } <= set(FEATURE_NAMES)
    row = feature_vector(PurchaseState.empty(), BehaviorState.empty(), purchase(0))
    assert len(row) == len(FEATURE_NAMES)
    assert all(isinstance(v, float) for v in row)


def test_each_group_owns_its_names_and_its_slice() -> None:
    """A group's values line up with its names, and the row is the groups in order."""
    ps, bs = PurchaseState.empty(), BehaviorState.empty()
    observe_purchase(ps, purchase(0, amount=20.0))
    p = purchase(60, amount=80.0)
    row = feature_vector(ps, bs, p)
    ts = p.occurred_at.timestamp()
    start = 0
    for group in GROUPS:
        values = group.values(ps, bs, NO_ENTITIES, p, ts)
        assert len(values) == len(group.names), group.family
        assert GROUP_SLICES[group.family] == slice(start, start + len(values))
        assert np.array_equal(row[start : start + len(values)], values, equal_nan=True)
        assert all(FEATURE_FAMILIES[name] == group.family for name in group.names)
        start += len(values)
    assert start == len(FEATURE_NAMES)
    assert row[COL["amount_ratio"]] == 4.0  # 80 ÷ the earlier average of 20


def test_purchase_step_reads_before_it_observes() -> None:
    ps, bs = PurchaseState.empty(), BehaviorState.empty()
    first = purchase(0)
    row = purchase_step(ps, bs, NO_ENTITIES, first, first.occurred_at.timestamp())
    assert row[COL["purchase_count"]] == 0.0 and ps.n == 1
    assert row == feature_vector(PurchaseState.empty(), bs, first)


@pytest.fixture(scope="module")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = Simulator(
        SimulatorConfig(
            users=400,
            start=T0,
            duration_s=5 * 86400,
            events_per_hour=None,
            fraud_share=0.05,
            seed=21,
            sessions_per_user_day=1.5,
        )
    )
    out = tmp_path_factory.mktemp("history")
    write_history(sim, out, fmt="parquet")
    write_history(sim, out, fmt="jsonl")
    return out


def test_no_skew_online_vs_offline(history_dir: Path, tmp_path: Path) -> None:
    """The detector's way (per-user state in a store as bytes, purchase and behaviour
    halves kept apart, load → feature step → save per event; entity state in the shared
    LMDB entity store, labels applied by the label consumer as their known_at passes)
    and the training way (offline replay of the table, labels at known_at) give
    bit-identical vectors, entity features included. Stated freshness here: a label is
    applied before the first event after its known_at (the label consumer's lag is
    zero); the detector's real lag is the label consumer's (docs/features.md)."""
    import pyarrow.parquet as pq

    from shopsentry.detection.feature_ops import SharedFeatureOps
    from shopsentry.features.entity_store import LmdbEntityStore
    from shopsentry.features.offline import known_labels

    labels = known_labels(pq.read_table(history_dir / "labels.parquet"))
    assert sum(label.is_fraud for label in labels) > 20
    table_events = events_from_table(history_dir / "events.parquet")
    offline = offline_features(table_events, labels=labels)  # the fast table path
    from_models = offline_features(iter(list(table_events)), labels=labels)  # the model path
    assert offline.event_ids == from_models.event_ids
    assert np.array_equal(offline.X, from_models.X, equal_nan=True)

    entity_store = LmdbEntityStore(tmp_path / "entities.lmdb")
    ops = SharedFeatureOps(entity_store)
    pending = sorted(labels, key=lambda label: label.known_at)
    next_label = 0
    purchase_store: dict[str, bytes] = {}
    behaviour_store: dict[str, bytes] = {}
    online_rows: list[Any] = []
    online_ids: list[str] = []
    for raw in table_events.table.column("raw_json").to_pylist():
        event = decode(raw)  # what the worker does with a record's bytes
        ts = event.occurred_at.timestamp()
        while next_label < len(pending) and pending[next_label].known_at <= ts:
            entity_store.apply_labels([pending[next_label]])
            next_label += 1
        user = event.user_id
        if isinstance(event, Purchase):
            pstate = PurchaseState.from_bytes(purchase_store.get(user))
            bstate = BehaviorState.from_bytes(behaviour_store.get(user))
            ops.begin_batch([event])
            row, pstate = ops.purchase_step(event, pstate, bstate)
            ops.end_batch()
            online_rows.append(row)
            online_ids.append(event.event_id)
            purchase_store[user] = pstate.to_bytes()
        else:
            bstate = BehaviorState.from_bytes(behaviour_store.get(user))
            observe_behavior(bstate, event)
            behaviour_store[user] = bstate.to_bytes()
    entity_store.close()
    online = np.asarray(online_rows, dtype=np.float32)
    assert online_ids == offline.event_ids
    assert len(online_ids) > 1000
    assert np.array_equal(online, offline.X, equal_nan=True)
    # Not vacuous: features vary, several are missing somewhere, none is constant; the
    # entity fraud features saw known frauds.
    assert np.isnan(offline.X).any()
    assert np.nanmax(offline.X[:, COL["card_fraud_share_30d"]]) > 0
    assert np.isfinite(offline.X[:, COL["card_days_since_fraud"]]).any()
    varying = [
        n
        for j, n in enumerate(FEATURE_NAMES)
        if np.unique(offline.X[:, j][~np.isnan(offline.X[:, j])]).size > 1
    ]
    user_features = [n for n in FEATURE_NAMES if FEATURE_FAMILIES[n] != "entity"]
    assert len(set(varying) & set(user_features)) >= len(user_features) - 2
    # card, device and IP entity counts vary (terminal and address: this history has none)
    assert {"card_purchases_7d", "device_users_7d", "ip_amount_30d"} <= set(varying)


def test_jsonl_and_parquet_histories_agree(history_dir: Path) -> None:
    a = offline_features(history_dir / "events.parquet")
    b = offline_features(history_dir / "events.jsonl")
    assert a.event_ids == b.event_ids
    assert np.array_equal(a.X, b.X, equal_nan=True)
    assert np.array_equal(a.occurred_at, b.occurred_at)


def test_frame_columns_and_arrow(history_dir: Path) -> None:
    frame = offline_features(history_dir / "events.parquet")
    assert frame.X.dtype == np.float32 and frame.X.shape == (
        len(frame.event_ids),
        len(FEATURE_NAMES),
    )
    assert np.all(np.diff(frame.occurred_at.astype(np.int64)) >= 0)
    assert np.array_equal(frame.amounts.astype(np.float32), frame.X[:, COL["amount"]])
    table = frame.to_arrow()
    assert table.column_names[:5] == ["event_id", "user_id", "order_id", "occurred_at", "amount"]
    assert table.num_rows == len(frame)


def test_unsorted_table_is_sorted_and_unsorted_models_are_refused(history_dir: Path) -> None:
    table = events_from_table(history_dir / "events.parquet").table
    reversed_table = table.take(pa.array(np.arange(table.num_rows)[::-1]))
    assert offline_features(reversed_table).event_ids == offline_features(table).event_ids
    events = list(events_from_table(table))[:200]
    with pytest.raises(HistoryReadError):
        offline_features(iter(events[::-1]))


def test_feature_matrix_matches_feature_vector(history_dir: Path) -> None:
    events = list(events_from_table(history_dir / "events.parquet"))[:3000]
    p: dict[str, PurchaseState] = {}
    b: dict[str, BehaviorState] = {}
    rows: list[tuple[PurchaseState, BehaviorState, Purchase]] = []
    expected: list[list[float]] = []
    for e in events:
        if e.event_type == "purchase":
            snapshot = PurchaseState.from_bytes(p.setdefault(e.user_id, PurchaseState()).to_bytes())
            bs = BehaviorState.from_bytes(b.setdefault(e.user_id, BehaviorState()).to_bytes())
            rows.append((snapshot, bs, e))
            expected.append(feature_vector(snapshot, bs, e))
            observe_purchase(p[e.user_id], e)
        else:
            observe_behavior(b.setdefault(e.user_id, BehaviorState()), e)
    matrix = feature_matrix(rows)
    assert matrix.dtype == np.float32
    assert np.array_equal(matrix, np.asarray(expected, dtype=np.float32), equal_nan=True)


def test_no_leakage_from_later_events(history_dir: Path) -> None:
    """A purchase's vector depends only on events strictly before it: changing or
    dropping everything after it changes nothing."""
    events = list(events_from_table(history_dir / "events.parquet"))
    full = offline_features(iter(events))
    cut = len(events) // 2
    prefix = offline_features(iter(events[:cut]))
    n = len(prefix.event_ids)
    assert n > 100
    assert np.array_equal(prefix.X, full.X[:n], equal_nan=True)
    # Rewrite the future: every later purchase ten times dearer, on new devices.
    changed = events[:cut] + [
        e.model_copy(update={"amount": e.amount * 10, "device_fingerprint": "dev-zz"})
        if e.event_type == "purchase"
        else e
        for e in events[cut:]
    ]
    rewritten = offline_features(iter(changed))
    assert np.array_equal(rewritten.X[:n], full.X[:n], equal_nan=True)
    assert not np.array_equal(
        rewritten.X[n:], full.X[n:], equal_nan=True
    )  # the change is seen later


def test_a_purchase_does_not_see_itself() -> None:
    rows = replay([purchase(0, amount=10.0), purchase(60, amount=1000.0)])
    assert math.isnan(rows[0][COL["user_avg_amount"]])
    assert rows[0][COL["purchase_count"]] == 0
    assert rows[1][COL["user_avg_amount"]] == 10.0
    assert rows[1][COL["amount_ratio"]] == 100.0
    assert rows[1][COL["amount_1h"]] == 10.0  # the earlier purchase only


# -- windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "count_feature", "amount_feature"),
    [
        (600, "purchases_10m", "amount_10m"),
        (3600, "purchases_1h", "amount_1h"),
        (86400, "purchases_24h", "amount_24h"),
    ],
)
def test_purchase_window_boundaries(window: float, count_feature: str, amount_feature: str) -> None:
    """A window of W seconds holds events strictly less than W seconds old."""
    inside = last([purchase(0, amount=7.0), purchase(window - 0.001)])
    assert inside[count_feature] == 1 and inside[amount_feature] == 7.0
    edge = last([purchase(0, amount=7.0), purchase(window)])
    assert edge[count_feature] == 0 and edge[amount_feature] == 0.0


def test_windows_nest() -> None:
    f = last(
        [
            purchase(0, amount=1.0),
            purchase(86400 - 3000, amount=2.0),
            purchase(86400 - 300, amount=4.0),
            purchase(86400),
        ]
    )
    assert (f["purchases_10m"], f["purchases_1h"], f["purchases_24h"]) == (1, 2, 2)
    assert (f["amount_10m"], f["amount_1h"], f["amount_24h"]) == (4.0, 6.0, 6.0)
    assert f["purchase_count"] == 3  # all-time count is not windowed


def test_failed_login_and_browse_windows() -> None:
    events = [
        behaviour(FailedLogin, 0),
        behaviour(FailedLogin, 86400 - 3600),
        behaviour(FailedLogin, 86400 - 3599),
        behaviour(PageView, 86400 - 1800, page="/"),
        behaviour(PageView, 86400 - 1799, page="/"),
        behaviour(AddToCart, 86400 - 10, product_id="p-1", quantity=1, price=3.0),
        purchase(86400),
    ]
    f = last(events)
    assert f["failed_logins_1h"] == 1
    assert f["failed_logins_24h"] == 2
    assert f["browse_events_30m"] == 1
    assert f["cart_adds_30m"] == 1
    assert f["seconds_since_last_behavior"] == pytest.approx(10.0)


def test_time_of_day_features() -> None:
    f = last([purchase(0)])  # 2026-03-02 12:00 UTC is a Monday
    assert f["hour_of_day"] == 12 and f["day_of_week"] == 0
    assert last([purchase(6 * 86400 + 11 * 3600)])["day_of_week"] == 6
    assert last([purchase(6 * 86400 + 11 * 3600)])["hour_of_day"] == 23


# -- meaning of the context features ------------------------------------------------------


def test_seed_history_features() -> None:
    f = last(
        [
            purchase(0, amount=20.0),
            purchase(2 * 86400, amount=40.0),
            purchase(4 * 86400, amount=90.0, item_count=3),
        ]
    )
    assert f["user_avg_amount"] == 30.0
    assert f["days_since_last_purchase"] == 2.0
    assert f["purchase_frequency"] == 0.5  # 2 purchases over 4 days
    assert f["item_count"] == 3
    assert f["amount_ratio"] == 3.0 and f["amount_vs_max"] == 90.0 / 40.0
    first = last([purchase(0)])
    assert math.isnan(first["user_avg_amount"]) and math.isnan(first["days_since_last_purchase"])
    assert first["purchase_frequency"] == 0.0


def test_novelty_features() -> None:
    history = [purchase(0), purchase(100)]
    same = last([*history, purchase(200)])
    assert (same["new_device"], same["new_card"], same["new_country"], same["new_ip"]) == (
        0,
        0,
        0,
        0,
    )
    new = last(
        [
            *history,
            purchase(
                200,
                device_fingerprint="dev-x",
                card_fingerprint="card-x",
                country="NG",
                ip_fingerprint="ip-x",
            ),
        ]
    )
    assert (new["new_device"], new["new_card"], new["new_country"], new["new_ip"]) == (1, 1, 1, 1)
    assert new["country_ne_home"] == 1
    # A device seen in behaviour (the user logged in with it) is not new to the user...
    seen = last(
        [
            *history,
            behaviour(Login, 150, device_fingerprint="dev-x"),
            purchase(200, device_fingerprint="dev-x"),
        ]
    )
    assert seen["new_device"] == 0 and seen["new_purchase_device"] == 1
    # ...but a device that only failed to log in is.
    failed = last(
        [
            *history,
            behaviour(FailedLogin, 150, device_fingerprint="dev-x"),
            purchase(200, device_fingerprint="dev-x"),
        ]
    )
    assert failed["new_device"] == 1
    # Missing fingerprints are missing, not "new".
    none = last(
        [
            *history,
            purchase(200, device_fingerprint=None, card_fingerprint=None, payment_method="paypal"),
        ]
    )
    assert (
        math.isnan(none["new_device"])
        and math.isnan(none["new_card"])
        and math.isnan(none["cards_on_device"])
    )


def test_shipping_and_home() -> None:
    history = [purchase(0), purchase(100)]
    f = last([*history, purchase(200, shipping_country="FR")])
    assert (f["billing_ne_shipping"], f["shipping_ne_home"], f["new_shipping_country"]) == (1, 1, 1)
    pos = last([*history, purchase(200, shipping_country=None, source="pos")])
    assert math.isnan(pos["billing_ne_shipping"]) and pos["source"] == 2
    nohome = last([purchase(0, shipping_country="FR")])
    assert math.isnan(nohome["shipping_ne_home"]) and nohome["billing_ne_shipping"] == 1


def test_cards_per_device_within_user() -> None:
    events = [purchase(i * 60, card_fingerprint=f"card-{i}") for i in range(4)]
    f = last([*events, purchase(300, card_fingerprint="card-new")])
    assert f["cards_on_device"] == 5 and f["cards_24h"] == 5
    other_device = last(
        [*events, purchase(300, device_fingerprint="dev-b", card_fingerprint="card-0")]
    )
    assert other_device["cards_on_device"] == 1 and other_device["devices_24h"] == 2


def test_account_change_features() -> None:
    events = [
        behaviour(Login, 0),
        behaviour(Login, 1000, device_fingerprint="dev-new", country="RO"),
        behaviour(PasswordChange, 1060),
        behaviour(AddressChange, 1120, new_country="RO"),
        behaviour(PaymentMethodAdded, 1180, payment_method="card", card_fingerprint="card-new"),
        purchase(
            1240, shipping_country="RO", card_fingerprint="card-new", device_fingerprint="dev-new"
        ),
    ]
    f = last(events)
    assert f["minutes_since_new_device_login"] == pytest.approx(4.0)
    assert f["minutes_since_new_country_login"] == pytest.approx(4.0)
    assert f["minutes_since_password_change"] == pytest.approx(3.0)
    assert f["minutes_since_address_change"] == pytest.approx(2.0)
    assert f["ships_to_changed_address"] == 1
    assert f["minutes_since_payment_method_added"] == pytest.approx(1.0)
    assert f["card_added_minutes"] == pytest.approx(1.0)
    assert f["new_device"] == 0  # logged in first: known to behaviour, flagged by the login feature
    assert f["logins_24h"] == 2
    assert f["account_age_days"] == pytest.approx(1240 / 86400)
    # The first ever login of an account is not a "new device" signal.
    first = last([behaviour(Login, 0, device_fingerprint="dev-z"), purchase(60)])
    assert math.isnan(first["minutes_since_new_device_login"])


def test_unknown_category_and_payment_codes() -> None:
    f = last([purchase(0, merchant_category="spaceships", payment_method="gift_card")])
    g = last([purchase(0, merchant_category=None)])
    assert f["merchant_category"] == 11 and f["payment_method"] == 5
    assert math.isnan(g["merchant_category"])


# -- state ----------------------------------------------------------------------------------


def test_state_round_trips_and_is_bounded() -> None:
    p, b = PurchaseState.empty(), BehaviorState.empty()
    for i in range(5000):
        e = purchase(
            i * 5.0,
            device_fingerprint=f"dev-{i}",
            card_fingerprint=f"card-{i}",
            ip_fingerprint=f"ip-{i}",
            country=["DE", "FR", "NL", "PL", "ES", "IT", "SE", "NO", "DK", "AT"][i % 10],
            shipping_country=None,
        )
        observe_purchase(p, e)
        observe_behavior(
            b,
            behaviour(
                PageView, i * 5.0, page="/", device_fingerprint=f"dev-{i}", ip_fingerprint=f"ip-{i}"
            ),
        )
        observe_behavior(b, behaviour(FailedLogin, i * 5.0 + 1))
    assert len(p.rts) <= MAX_RECENT and len(p.devices) <= MAX_SEEN and len(p.cards) <= MAX_SEEN
    assert len(p.countries) <= 8 and len(p.dev_cards) <= 8
    assert len(b.devices) <= MAX_SEEN and len(b.browse) <= 64 and len(b.failed) <= 64
    assert len(p.to_bytes()) < 12_000 and len(b.to_bytes()) < 6_000
    assert p.n == 5000 and p.total == pytest.approx(5000 * 50.0)
    p2, b2 = PurchaseState.from_bytes(p.to_bytes()), BehaviorState.from_bytes(b.to_bytes())
    assert p2 == p and b2 == b
    probe = purchase(5000 * 5.0 + 1, device_fingerprint="dev-4999")
    assert feature_vector(p2, b2, probe) == feature_vector(p, b, probe)


def test_purchase_window_prunes_by_time() -> None:
    p = PurchaseState.empty()
    for seconds in (0, 10, 20):
        observe_purchase(p, purchase(seconds))
    observe_purchase(p, purchase(86400 + 15))
    assert p.rts == [20.0 + T0.timestamp(), 86400 + 15 + T0.timestamp()]


def test_empty_and_bad_state_bytes() -> None:
    assert PurchaseState.from_bytes(None) == PurchaseState.empty()
    assert BehaviorState.from_bytes(b"") == BehaviorState.empty()
    for bad in (b"not json", b"[9]", b'{"a": 1}', BehaviorState.empty().to_bytes()):
        with pytest.raises(StateDecodeError):
            PurchaseState.from_bytes(bad)
    with pytest.raises(StateDecodeError):
        BehaviorState.from_bytes(PurchaseState.empty().to_bytes())


def test_events_survive_the_codec_unchanged_for_features() -> None:
    """Features from decoded bytes equal features from the original objects."""
    events = [
        behaviour(Login, 0),
        purchase(30, amount=12.34),
        behaviour(PageView, 40, page="/"),
        purchase(50),
    ]
    decoded = [decode(encode(e)) for e in events]
    assert np.array_equal(np.asarray(replay(decoded)), np.asarray(replay(events)), equal_nan=True)
