"""The fraud generator's toolkit: what every scenario draws with.

:class:`IncidentGen` holds the run's population, config and random stream, the rows
being written and the per-scenario purchase counts, and the helpers the scenarios
(:mod:`.scenarios`, :mod:`.rings`) share: pick a victim old enough to have a history, a
fraudster's origin country, a device or card the victim already uses, an amount near
the victim's norm, a category (risky or the victim's favourite), the browsing before
checkout, and the recording of one fraud purchase or one fraudster's fresh account.
Keeping them apart from the scenarios lets a reader see each scenario as its story.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shopsentry.simulator.config import (
    ADD_TO_CART,
    CARD,
    CATEGORY_WEIGHTS,
    COUNTRIES,
    COUNTRY_CODES,
    DAY_US,
    FRAUD_ORIGINS,
    PAGE_VIEW,
    PURCHASE,
    RISKY_CATEGORIES,
    TAG_OF,
    US,
    SimulatorConfig,
)
from shopsentry.simulator.frame import Frame, RowBuilder
from shopsentry.simulator.population import Population

_ORIGIN_INDEX = np.array([COUNTRY_CODES.index(c) for c, _ in FRAUD_ORIGINS])
_ORIGIN_P = np.array([w for _, w in FRAUD_ORIGINS]) / sum(w for _, w in FRAUD_ORIGINS)
_CW = np.asarray(CATEGORY_WEIGHTS, dtype=float) / sum(CATEGORY_WEIGHTS)
MINUTE_US = 60 * US


@dataclass
class FraudAccount:
    """A fresh account opened by a fraudster (appended after the population's users)."""

    user: int
    home: int
    created_us: int


@dataclass
class Incidents:
    """What the fraud generator produced: rows, new accounts, counts per scenario."""

    frame: Frame
    accounts: list[FraudAccount] = field(default_factory=list)
    purchases: dict[str, int] = field(default_factory=dict)


class IncidentGen:
    """The state one run's fraud is generated into, and the draws scenarios share."""

    def __init__(self, pop: Population, config: SimulatorConfig, rng: np.random.Generator) -> None:
        self.pop = pop
        self.config = config
        self.rng = rng
        self.rows = RowBuilder()
        self.accounts: list[FraudAccount] = []
        self.purchases: dict[str, int] = {}
        self.ring_victims: set[int] = set()  # taken over by a ring once, never twice
        # Victims need some history: accounts at least two days old at the incident.
        self.weights = pop.activity / pop.activity.sum()

    # -- helpers ---------------------------------------------------------------------
    def r(self) -> float:
        return float(self.rng.random())

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def new_id(self) -> int:
        return int(self.rng.integers(1, 2**62))

    def origin(self, avoid: int) -> int:
        for _ in range(8):
            c = int(self.rng.choice(_ORIGIN_INDEX, p=_ORIGIN_P))
            if c != avoid:
                return c
        return (avoid + 1) % len(COUNTRIES)

    def anchor(self, margin_us: int = 0) -> int:
        """A time in the window, leaving ``margin_us`` for what follows it."""
        start, end = self.config.start_us, self.config.end_us
        return start + int(self.r() * max(end - start - margin_us, 1))

    def victim(self, at: int) -> int | None:
        for _ in range(20):
            u = int(self.rng.choice(self.pop.n, p=self.weights))
            if self.pop.created_us[u] <= at - 2 * DAY_US:
                return u
        return None

    def known_device(self, u: int) -> tuple[int, int, int]:
        slot = int(self.rng.integers(0, self.pop.n_devices[u]))
        return (
            int(self.pop.devices[u, slot]),
            int(self.pop.device_kind[u, slot]),
            int(self.pop.device_ip[u, slot]),
        )

    def known_card(self, u: int) -> int:
        return int(self.pop.cards[u, int(self.rng.integers(0, self.pop.n_cards[u]))])

    def usual_amount(self, u: int) -> float:
        return float(np.exp(self.rng.normal(self.pop.mu[u], self.pop.sigma[u])))

    def risky_category(self, risky_share: float, u: int | None = None) -> int:
        if self.r() < risky_share:
            return int(self.rng.choice(RISKY_CATEGORIES))
        if u is not None and u < self.pop.n and self.r() < 0.5:
            return int(self.pop.fav_category[u])
        return int(self.rng.choice(len(_CW), p=_CW))

    def browse(self, t: int, ctx: dict[str, int], *, careful: bool) -> int:
        """Page views (and a cart add) before checkout; returns the checkout time.
        Careless fraudsters go straight to checkout, careful ones browse like customers."""
        pages = 1 + int(self.rng.poisson(2.0)) if careful else int(self.rng.integers(0, 2))
        for _ in range(pages):
            t += int(self.rng.exponential(30.0) * US) + US
            self.rows.add(ts=t, etype=PAGE_VIEW, aux=int(self.rng.integers(100_000)), **ctx)
        if careful or self.r() < 0.5:
            t += int(self.rng.exponential(20.0) * US) + US
            self.rows.add(
                ts=t,
                etype=ADD_TO_CART,
                aux=int(self.rng.integers(100_000)),
                qty=1,
                amount=round(self.uniform(5, 200), 2),
                **ctx,
            )
        return t + int(self.rng.exponential(30.0) * US) + US

    def purchase(self, scenario: str, ts: int, ctx: dict[str, int], **fields: int | float) -> None:
        """One fraud purchase; shipped to an address of the fraudster's unless ``addr``
        says otherwise (the victim's own address, a ring's drop)."""
        fields.setdefault("qty", 1)
        fields.setdefault("pm", CARD)
        if int(fields.get("shipping", -1)) >= 0 and "addr" not in fields:
            fields["addr"] = self.new_id()
        self.rows.add(ts=ts, etype=PURCHASE, tag=TAG_OF[scenario], fraud=True, **ctx, **fields)
        self.purchases[scenario] = self.purchases.get(scenario, 0) + 1

    def fraud_account(self, at: int, home: int) -> int:
        user = self.pop.n + len(self.accounts)
        self.accounts.append(FraudAccount(user=user, home=home, created_us=at))
        return user
