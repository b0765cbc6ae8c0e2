"""Fraud that only the entities give away: nothing in the customer's own history is odd.

- ``compromised_terminal``: a tampered POS terminal (a skimmer fitted, a cashier in on
  it): for days to weeks a share of the purchases taken on it are fraudulent. They are
  the store's ordinary purchases by its ordinary customers, with their own cards, for
  their usual amounts; only the terminal they share, and its fraud labels as they come
  in, tell them apart.
- ``fraud_ring``: a few devices, IPs and drop addresses behind many accounts (fresh
  sign-ups and taken-over ones) over days; each account buys once or twice, for an
  ordinary amount, shipped within its own country, after browsing like a customer.
- ``card_testing_ring``: card testing spread across many accounts over a few hours so
  no account shows a burst: each account tries one or two cards new to it, for amounts
  in the low end of its ordinary range, from the ring's few devices and IPs.

Their hard negatives (shared by honest customers) are drawn by the population and the
legitimate traffic: the family's shared tablet, the busy store's terminal, the campus
or office IP, the reshipper's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from shopsentry.simulator.config import (
    DAY_US,
    HOUR_US,
    LOGIN,
    PURCHASE,
    TAG_OF,
    SimulatorConfig,
)
from shopsentry.simulator.frame import Frame
from shopsentry.simulator.traffic import BUSY_STORE, POS_SOURCE

if TYPE_CHECKING:
    from shopsentry.simulator.incidents import IncidentGen

MINUTE_US = 60_000_000
# Fresh ring accounts spend like a typical customer: log-normal around this amount.
RING_AMOUNT = 55.0
TERMINAL_SHARE = 0.12  # share of all fraud purchases on compromised terminals
ENTITY_SCENARIOS = ("compromised_terminal", "fraud_ring", "card_testing_ring")
SHARED_ENTITY_CASES = ("shared_tablet", "busy_terminal", "campus_ip", "reshipper")


def compromise_terminals(
    frame: Frame, config: SimulatorConfig, rng: np.random.Generator, wanted: int
) -> int:
    """Turn about ``wanted`` legitimate POS purchases of ``frame`` into fraud on a few
    compromised terminals (in place); returns how many were turned."""
    c = frame.cols
    ts = c["ts"]
    pos = np.flatnonzero(
        (c["etype"] == PURCHASE)
        & (c["source"] == POS_SOURCE)
        & (c["store"] % 1000 < BUSY_STORE)  # the busy stores stay honest: hard negatives
        & (ts >= config.start_us)
        & (ts < config.end_us)
    )
    if wanted <= 0 or not len(pos):
        return 0
    span = config.end_us - config.start_us
    done: set[int] = set()
    turned = 0
    for _ in range(200):
        if turned >= wanted:
            break
        terminal = int(c["device"][pos[int(rng.integers(len(pos)))]])
        if terminal in done:
            continue
        done.add(terminal)
        length = min(int(rng.uniform(3, 21) * DAY_US), span)
        begin = config.start_us + int(rng.random() * (span - length))
        share = rng.uniform(0.3, 0.8)
        on = pos[(c["device"][pos] == terminal) & (ts[pos] >= begin) & (ts[pos] < begin + length)]
        hit = on[rng.random(len(on)) < share]
        hit = hit[np.argsort(ts[hit], kind="stable")][: wanted - turned]
        c["fraud"][hit] = True
        c["tag"][hit] = TAG_OF["compromised_terminal"]
        turned += len(hit)
    return turned


def _ordinary_amount(gen: IncidentGen, user: int, low: bool = False) -> float:
    """An amount inside the user's ordinary range (within 1.5 sd of the log-mean);
    ``low`` keeps to its lower half. Fresh accounts spend like a typical customer."""
    if user >= gen.pop.n:
        mu, sigma = float(np.log(RING_AMOUNT * (0.5 if low else 1.0))), 0.4
    else:
        mu, sigma = float(gen.pop.mu[user]), float(gen.pop.sigma[user])
    z = gen.uniform(-1.5, 0.0) if low else float(np.clip(gen.rng.normal(0, 0.7), -1.5, 1.5))
    return round(max(float(np.exp(mu + z * sigma)), 1.0), 2)


def _ring_account(gen: IncidentGen, at: int, country: int, fresh_share: float) -> int:
    """A fresh sign-up, or a taken-over account living in the ring's ``country``."""
    if gen.r() >= fresh_share:
        pop = gen.pop
        # Accounts of the country at least two days old, by activity (as victims are).
        local = np.flatnonzero((pop.home == country) & (pop.created_us <= at - 2 * DAY_US))
        if len(local):
            cum = np.cumsum(pop.activity[local])
            for _ in range(10):
                u = int(local[min(int(np.searchsorted(cum, gen.r() * cum[-1])), len(local) - 1)])
                if u not in gen.ring_victims:
                    gen.ring_victims.add(u)
                    return u
    return gen.fraud_account(at - int(gen.uniform(5, 2 * 24 * 60) * MINUTE_US), country)


def _pool(gen: IncidentGen, lo: int, hi: int) -> list[int]:
    return [gen.new_id() for _ in range(int(gen.rng.integers(lo, hi + 1)))]


@dataclass
class _Ring:
    """Where a ring works from: its time span, its country, its devices and IPs."""

    t0: int
    span: int
    country: int
    devices: list[int]
    kinds: list[int]  # web or mobile, per device
    ips: list[int]

    @classmethod
    def start(cls, gen: IncidentGen, span: int, devices: int, ips: int) -> _Ring:
        """A ring in a country where victims live, with up to ``devices`` devices and
        ``ips`` IPs, active for ``span`` (at most the run)."""
        span = min(span, gen.config.end_us - gen.config.start_us)
        t0 = gen.anchor(span)
        u = gen.victim(t0 + span)
        country = int(gen.pop.home[u]) if u is not None else int(gen.pop.home[0])
        pool = _pool(gen, 1, devices)
        kinds = [int(gen.rng.integers(0, 2)) for _ in pool]
        return cls(t0, span, country, pool, kinds, _pool(gen, 1, ips))

    def account(self, gen: IncidentGen, fresh_share: float) -> tuple[int, dict[str, int]]:
        """When the next account is used, and its context: one of the ring's devices and
        IPs, on a fresh or a taken-over account."""
        t = self.t0 + int(gen.r() * self.span)
        user = _ring_account(gen, t, self.country, fresh_share)
        d = int(gen.rng.integers(len(self.devices)))
        return t, {
            "user": user,
            "source": self.kinds[d],
            "device": self.devices[d],
            "ip": self.ips[int(gen.rng.integers(len(self.ips)))],
            "country": self.country,
        }


def fraud_ring(gen: IncidentGen) -> None:
    ring = _Ring.start(gen, int(gen.uniform(1, 10) * DAY_US), devices=3, ips=4)
    drops = _pool(gen, 1, 3)
    for _ in range(int(gen.rng.integers(6, 26))):
        t, ctx = ring.account(gen, fresh_share=0.55)
        user = ctx["user"]
        gen.rows.add(ts=t, etype=LOGIN, **ctx)
        t = gen.browse(t + 20_000_000, ctx, careful=True)
        card = gen.known_card(user) if user < gen.pop.n else gen.new_id()
        drop = drops[int(gen.rng.integers(len(drops)))]
        for _ in range(1 if gen.r() < 0.75 else 2):
            gen.purchase(
                "fraud_ring",
                t,
                ctx,
                amount=_ordinary_amount(gen, user),
                card=card,
                billing=ring.country,
                shipping=ring.country,
                addr=drop,
                qty=1 + int(gen.rng.poisson(0.5)),
                aux=gen.risky_category(0.2, user),
            )
            t += int(gen.uniform(1, 48) * HOUR_US)


def card_testing_ring(gen: IncidentGen) -> None:
    ring = _Ring.start(gen, int(gen.uniform(1, 6) * HOUR_US), devices=2, ips=3)
    for _ in range(int(gen.rng.integers(10, 41))):
        t, ctx = ring.account(gen, fresh_share=0.7)
        t = gen.browse(t, ctx, careful=gen.r() < 0.5)
        for _ in range(1 if gen.r() < 0.6 else 2):
            gen.purchase(
                "card_testing_ring",
                t,
                ctx,
                amount=_ordinary_amount(gen, ctx["user"], low=True),
                card=gen.new_id(),
                billing=ring.country,
                shipping=ring.country,
                aux=gen.risky_category(0.3, ctx["user"]),
            )
            t += int(gen.uniform(2, 30) * MINUTE_US)
