"""The entity-only scenarios and their hard negatives: each is present and labelled (with
late labels), carries the entity it is about, and looks ordinary from the customer's own
history, so only the entity gives it away."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from shopsentry.simulator import Simulator
from shopsentry.simulator.config import DAY_US
from shopsentry.simulator.rings import ENTITY_SCENARIOS, RING_AMOUNT, SHARED_ENTITY_CASES


@dataclass
class Run:
    sim: Simulator
    purchases: list[dict[str, Any]]  # decoded, with "scenario" and "user" (number) added
    user_no: dict[str, int]

    def of(self, scenario: str) -> list[dict[str, Any]]:
        return [p for p in self.purchases if p["scenario"] == scenario]

    @property
    def honest(self) -> list[dict[str, Any]]:
        return [p for p in self.purchases if not p["fraud"]]


@pytest.fixture(scope="module")
def run(wide_history: Simulator) -> Run:
    """Every purchase of the run, each with its label's scenario (or legit case)."""
    sim = Simulator(replace(wide_history.config, legit_labels=True))
    labels = {x.event_id: x for x in sim.labels()}
    purchases = []
    for rec in sim.records():
        if rec.is_purchase:
            doc = orjson.loads(rec.raw)
            label = labels[rec.event_id]
            doc.update(scenario=label.scenario, fraud=label.is_fraud, ts_us=rec.ts_us)
            purchases.append(doc)
    # User ids end in the user's number (fraudsters' fresh accounts come after the rest).
    user_no = {p["user_id"]: int(p["user_id"].rsplit("-", 1)[1]) for p in purchases}
    return Run(sim, purchases, user_no)


def test_entity_scenarios_are_present_and_labelled_late(run: Run) -> None:
    for name in ENTITY_SCENARIOS:
        rows = run.of(name)
        assert len(rows) >= 40, name
        assert all(p["fraud"] for p in rows)
    labels = [x for x in run.sim.labels() if x.scenario in ENTITY_SCENARIOS]
    delays = np.array([(x.known_at - x.occurred_at) / timedelta(days=1) for x in labels])
    assert (delays > 0).all() and delays.max() <= 60
    assert ((delays >= 1) & (delays <= 30)).mean() >= 0.7  # chargebacks, like the others
    assert (delays < 1).any()  # and a few reviews within the day


def test_every_purchase_names_its_entities(run: Run) -> None:
    for p in run.purchases:
        if p["source"] == "pos":
            assert p["store_id"] and p["terminal_id"] and p["shipping_address_hash"] is None
        else:
            assert p["store_id"] is None and p["terminal_id"] is None
            # Shipped goods have an address; digital ones neither.
            assert (p["shipping_address_hash"] is None) == (p["shipping_country"] is None)


def _ordinary(run: Run, p: dict[str, Any], *, low: bool = False) -> bool:
    """The amount is inside the customer's own usual range (1.5 sd of the log-mean; a
    fresh account: around what a typical customer spends)."""
    pop = run.sim.population
    u = run.user_no[p["user_id"]]
    if u >= pop.n:
        mu, sd = np.log(RING_AMOUNT * (0.5 if low else 1.0)), 0.4
    else:
        mu, sd = pop.mu[u] + (np.log(0.6) if p["source"] == "pos" else 0.0), pop.sigma[u]
    return bool(abs(np.log(p["amount"]) - mu) <= 1.5 * sd + 0.01)


def test_compromised_terminal_purchases_are_the_stores_ordinary_ones(run: Run) -> None:
    pop = run.sim.population
    rows = run.of("compromised_terminal")
    assert all(p["source"] == "pos" for p in rows)
    # They are honest purchases' amounts: as often in the customer's usual range as the
    # honest POS purchases are.
    honest = [p for p in run.honest if p["source"] == "pos"]
    usual = np.mean([_ordinary(run, p) for p in rows])
    assert usual >= 0.8 and abs(usual - np.mean([_ordinary(run, p) for p in honest])) < 0.1
    # The customer's own card (or cash), in the customer's home country.
    for p in rows:
        u = run.user_no[p["user_id"]]
        own = {f"card-{c:016x}" for c in pop.cards[u].tolist()} | {f"card-{pop.new_card[u]:016x}"}
        assert p["card_fingerprint"] is None or p["card_fingerprint"] in own
        assert p["billing_country"] == p["country"]
    by_terminal: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in run.purchases:
        if p["terminal_id"]:
            by_terminal[p["terminal_id"]].append(p)
    terminals = {p["terminal_id"] for p in rows}
    spans = []
    for t in terminals:
        bad = [p["ts_us"] for p in by_terminal[t] if p["scenario"] == "compromised_terminal"]
        inside = [p for p in by_terminal[t] if min(bad) <= p["ts_us"] <= max(bad)]
        share = len(bad) / len(inside)
        assert 0.1 <= share <= 1.0  # a share of the terminal's purchases, not all of them
        spans.append((max(bad) - min(bad)) / DAY_US)
    assert max(spans) >= 3  # days to weeks
    assert len({p["user_id"] for p in rows}) >= 10  # many customers, each looking normal


def _groups(rows: list[dict[str, Any]], key: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for p in rows:
        out[p[key]].add(p["user_id"])
    return out


def test_fraud_ring_shares_devices_ips_and_drops_across_ordinary_accounts(run: Run) -> None:
    rows = run.of("fraud_ring")
    per_account = Counter(p["user_id"] for p in rows)
    assert max(per_account.values()) <= 2  # no account shows a burst
    assert all(_ordinary(run, p) for p in rows)
    assert all(p["shipping_country"] == p["billing_country"] == p["country"] for p in rows)
    for key in ("device_fingerprint", "ip_fingerprint", "shipping_address_hash"):
        assert max(len(users) for users in _groups(rows, key).values()) >= 5, key
    fresh = {u for u in per_account if run.user_no[u] >= run.sim.population.n}
    assert 0 < len(fresh) < len(per_account)  # new accounts and taken-over ones


def test_card_testing_ring_spreads_cards_over_accounts(run: Run) -> None:
    rows = run.of("card_testing_ring")
    per_account = Counter(p["user_id"] for p in rows)
    assert max(per_account.values()) <= 2
    assert all(_ordinary(run, p, low=True) for p in rows)
    assert all(p["amount"] >= 1.0 for p in rows)
    assert len({p["card_fingerprint"] for p in rows}) == len(rows)  # a new card each time
    devices = _groups(rows, "device_fingerprint")
    assert max(len(users) for users in devices.values()) >= 8
    # Each ring works within hours on its devices.
    for device in devices:
        times = [p["ts_us"] for p in rows if p["device_fingerprint"] == device]
        assert (max(times) - min(times)) / DAY_US < 1


@pytest.mark.parametrize(
    ("case", "key", "users"),
    [
        ("shared_tablet", "device_fingerprint", 2),
        ("busy_terminal", "terminal_id", 30),
        ("campus_ip", "ip_fingerprint", 10),
        ("reshipper", "shipping_address_hash", 10),
    ],
)
def test_hard_negatives_share_an_entity_among_honest_customers(
    run: Run, case: str, key: str, users: int
) -> None:
    rows = run.of(case)
    assert rows and not any(p["fraud"] for p in rows)
    groups = _groups(rows, key)
    assert max(len(u) for u in groups.values()) >= users
    # The shared entity is no fraud hot spot: at most the run's own fraud share passes
    # through it (a victim's own tablet or office IP may serve a takeover).
    shared = {k for k, u in groups.items() if len(u) >= 2}
    through = [p["fraud"] for p in run.purchases if p[key] in shared]
    assert np.mean(through) <= np.mean([p["fraud"] for p in run.purchases])


def test_hard_negative_cases_are_all_present(wide_history: Simulator) -> None:
    assert set(SHARED_ENTITY_CASES) <= set(wide_history.stats["legit_cases"])
