"""Labelled fraud scenarios, each with a hard variant that looks ordinary.

Every scenario leaves signals a good model can combine (velocity, novelty of device /
card / country, recent account changes, amount against the user's own norm, browsing
before buying, hour against the user's own hours), but no single threshold catches it:
the hard variants keep the amount normal, reuse a known device, skip the address change
or stay in the home country; meanwhile the legitimate traffic has trips abroad, new
phones, big-ticket orders, gifts shipped elsewhere and night owls.

Card-present fraud (a skimmed or cloned card at a shop's terminal) keeps the point of
sale from being a free pass.

The scenarios only the entities give away (a compromised terminal, fraud rings) are in
:mod:`.rings`.

Fraud sessions browse less than real customers (half of them go straight to checkout),
buy risky categories more often, and happen at any hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shopsentry.simulator.config import (
    ADD_TO_CART,
    ADDRESS_CHANGE,
    CARD,
    CATEGORY_WEIGHTS,
    COUNTRIES,
    COUNTRY_CODES,
    COUNTRY_TZ,
    DAY_US,
    FAILED_LOGIN,
    FRAUD_ORIGINS,
    HOUR_US,
    LOGIN,
    PAGE_VIEW,
    PASSWORD_CHANGE,
    PM_ADDED,
    POS_CATEGORIES,
    PURCHASE,
    RISKY_CATEGORIES,
    TAG_NAMES,
    TAG_OF,
    US,
    SimulatorConfig,
)
from shopsentry.simulator.frame import Frame, RowBuilder
from shopsentry.simulator.population import Population
from shopsentry.simulator.rings import card_testing_ring, fraud_ring
from shopsentry.simulator.traffic import store_terminal

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

    # -- scenarios ------------------------------------------------------------------------
    def card_testing(self) -> None:
        """Bursts of tiny charges, usually each on another stolen card, to find live ones."""
        subtle = self.r() < 0.3
        name = "card_testing_subtle" if subtle else "card_testing"
        t = self.anchor(2 * HOUR_US)
        origin = self.origin(-1)
        if self.r() < 0.6:
            user = self.fraud_account(t - int(self.uniform(1, 120) * MINUTE_US), origin)
            home = origin
        else:
            victim = self.victim(t)
            if victim is None:
                return
            user, home = victim, int(self.pop.home[victim])
        device = self.new_id()
        ctx = {
            "user": user,
            "source": int(self.rng.integers(0, 2)),
            "device": device,
            "ip": self.new_id(),
            "country": origin if self.r() < 0.7 else home,
        }
        self.rows.add(ts=t, etype=LOGIN, **ctx)
        n = int(self.rng.integers(2, 5)) if subtle else int(self.rng.integers(4, 15))
        gap = 12 * MINUTE_US if subtle else 50 * US
        card = self.new_id()
        for _ in range(n):
            t += int(self.rng.exponential(gap)) + 5 * US
            if self.r() < (0.3 if subtle else 0.8):
                card = self.new_id()
            amount = (
                self.uniform(3, 30) if subtle else (1.0 if self.r() < 0.3 else self.uniform(0.5, 6))
            )
            billing = origin if self.r() < 0.5 else int(self.rng.integers(0, len(COUNTRIES)))
            self.purchase(
                name,
                t,
                ctx,
                amount=round(amount, 2),
                card=card,
                billing=billing,
                shipping=-1 if self.r() < 0.6 else home,
                aux=self.risky_category(0.85 if not subtle else 0.5),
            )

    def account_takeover(self) -> None:
        """Stolen credentials: login from a new device and country, password and address
        changed, then a high-value order shipped elsewhere. The quiet variant changes
        nothing, logs in from the home country and ships home (to a mule)."""
        quiet = self.r() < 0.35
        name = "account_takeover_quiet" if quiet else "account_takeover"
        t_buy = self.anchor(3 * HOUR_US)
        u = self.victim(t_buy)
        if u is None:
            return
        home = int(self.pop.home[u])
        origin = home if quiet or self.r() < 0.15 else self.origin(home)
        t = t_buy - int(self.uniform(5, 360) * MINUTE_US)
        ctx = {
            "user": u,
            "source": int(self.rng.integers(0, 2)),
            "device": self.new_id(),
            "ip": self.new_id(),
            "country": origin,
        }
        for _ in range(int(self.rng.integers(0, 2 if quiet else 5))):
            self.rows.add(
                ts=t - int(self.uniform(1, 30) * MINUTE_US), etype=FAILED_LOGIN, aux=0, **ctx
            )
        self.rows.add(ts=t, etype=LOGIN, **ctx)
        ship = home if quiet else (self.origin(home) if self.r() < 0.5 else origin)
        if not quiet:
            if self.r() < 0.75:
                self.rows.add(
                    ts=t + int(self.uniform(1, 10) * MINUTE_US), etype=PASSWORD_CHANGE, **ctx
                )
            if self.r() < 0.75:
                self.rows.add(
                    ts=t + int(self.uniform(2, 20) * MINUTE_US),
                    etype=ADDRESS_CHANGE,
                    aux=1,
                    shipping=ship,
                    **ctx,
                )
        t = self.browse(max(t_buy, t + MINUTE_US), ctx, careful=self.r() < (0.8 if quiet else 0.3))
        card = self.known_card(u)
        for _ in range(1 if self.r() < 0.7 else 2):
            scale = self.uniform(1.3, 3.0) if quiet else self.uniform(3.0, 10.0)
            amount = self.usual_amount(u) * scale
            self.purchase(
                name,
                t,
                ctx,
                amount=round(min(amount, 50_000.0), 2),
                card=card,
                billing=home,
                shipping=ship,
                qty=int(self.rng.integers(1, 4)),
                aux=self.risky_category(0.4 if quiet else 0.7, u),
            )
            t += int(self.uniform(3, 40) * MINUTE_US)

    def stolen_card(self) -> None:
        """A stolen card on a new device: amount far above the user's norm, billing and
        shipping that do not match. The ordinary variant: a new card on the user's own
        device for a normal amount (a family member, a friend), added minutes or days
        before, or typed in at checkout with no "added" event at all."""
        ordinary = self.r() < 0.25
        name = "stolen_card_ordinary" if ordinary else "stolen_card"
        t = self.anchor(HOUR_US)
        card = self.new_id()
        if ordinary:
            u = self.victim(t)
            if u is None:
                return
            home = int(self.pop.home[u])
            device, kind, ip = self.known_device(u)
            ctx = {"user": u, "source": kind, "device": device, "ip": ip, "country": home}
            added = self.r()
            if added < 0.25:  # typed in at checkout without saving: no "added" event
                t = self.browse(t, ctx, careful=self.r() < 0.5)
            elif added < 0.65:  # the card was added earlier (days ago), as a customer would
                self.rows.add(
                    ts=t - int(self.uniform(1, 120) * HOUR_US),
                    etype=PM_ADDED,
                    pm=CARD,
                    card=card,
                    **ctx,
                )
                t = self.browse(t, ctx, careful=self.r() < 0.5)
            else:
                self.rows.add(ts=t, etype=PM_ADDED, pm=CARD, card=card, **ctx)
                t = self.browse(
                    t + int(self.uniform(0.2, 10) * MINUTE_US), ctx, careful=self.r() < 0.5
                )
            amount = self.usual_amount(u) * self.uniform(1.5, 3.0)
            self.purchase(
                name,
                t,
                ctx,
                amount=round(amount, 2),
                card=card,
                billing=home,
                shipping=home,
                addr=int(self.pop.address[u]),
                qty=1 + int(self.rng.poisson(0.5)),
                aux=self.risky_category(0.6, u),
            )
            return
        if self.r() < 0.3:
            home = self.origin(-1)
            u = self.fraud_account(t - int(self.uniform(10, 3 * 24 * 60) * MINUTE_US), home)
            amount = self.uniform(150, 2500)
        else:
            victim = self.victim(t)
            if victim is None:
                return
            u, home = victim, int(self.pop.home[victim])
            amount = self.usual_amount(u) * self.uniform(3.0, 15.0)
        if self.r() < 0.8:
            device, kind, ip = self.new_id(), int(self.rng.integers(0, 2)), self.new_id()
        else:
            device, kind, ip = (
                self.known_device(u) if u < self.pop.n else (self.new_id(), 0, self.new_id())
            )
        country = home if self.r() < 0.5 else self.origin(home)
        ctx = {"user": u, "source": kind, "device": device, "ip": ip, "country": country}
        self.rows.add(ts=t, etype=LOGIN, **ctx)
        if self.r() < 0.3:
            self.rows.add(ts=t + 30 * US, etype=PM_ADDED, pm=CARD, card=card, **ctx)
        t = self.browse(t + MINUTE_US, ctx, careful=self.r() < 0.45)
        billing = home if self.r() < 0.4 else int(self.rng.integers(0, len(COUNTRIES)))
        shipping = billing if self.r() < 0.4 else self.origin(billing)
        self.purchase(
            name,
            t,
            ctx,
            amount=round(min(amount, 50_000.0), 2),
            card=card,
            billing=billing,
            shipping=shipping,
            qty=1 + int(self.rng.poisson(0.7)),
            aux=self.risky_category(0.75, u),
        )

    def card_present(self) -> None:
        """Card-present fraud at a shop's terminal with a skimmed / counterfeit copy of
        the user's card: in a store far from home (another city or country), often at
        odd hours, a few purchases in a row. The cloned variant uses the copy at the
        user's own usual store, for an amount near the user's norm."""
        cloned = self.r() < 0.3
        name = "card_present_cloned" if cloned else "card_present"
        t = self.anchor(3 * HOUR_US)
        u = self.victim(t)
        if u is None:
            return
        if cloned and self.pop.p_pos[u] == 0.0:  # prefer people who shop in stores
            for _ in range(5):
                alt = self.victim(t)
                if alt is not None and self.pop.p_pos[alt] > 0.0:
                    u = alt
                    break
        home = int(self.pop.home[u])
        if cloned:
            country, store = home, int(self.pop.store[u])
            if self.r() < 0.5:  # cashed out at closing time, when the shop is quiet
                tz = COUNTRY_TZ[country]
                day = t // DAY_US
                t = day * DAY_US + int((self.uniform(20.0, 23.5) - tz) % 24 * HOUR_US)
                t = min(max(t, self.config.start_us), self.config.end_us - 3 * HOUR_US)
        else:
            abroad = self.r() < 0.5
            country = self.origin(home) if abroad else home
            store = country * 1000 + int(self.rng.integers(40, 999))
            if self.r() < 0.4:  # late-night shops, petrol stations
                tz = COUNTRY_TZ[country]
                day = t // DAY_US
                t = day * DAY_US + int((self.uniform(0.0, 5.0) - tz) % 24 * HOUR_US)
                t = min(max(t, self.config.start_us), self.config.end_us - 3 * HOUR_US)
        card = self.known_card(u)
        # A cloned card is cashed out fast: two or three purchases within the hour.
        n = 2 + int(self.rng.binomial(1, 0.4)) if cloned else 1 + int(self.rng.binomial(2, 0.35))
        for _ in range(n):
            terminal = int(store_terminal(store))
            ctx = {
                "user": u,
                "source": 2,
                "device": terminal,
                "ip": terminal + 1,
                "country": country,
                "store": store,
            }
            scale = self.uniform(2.5, 6.0) if cloned else self.uniform(1.5, 8.0)
            amount = self.usual_amount(u) * 0.6 * scale
            self.purchase(
                name,
                t,
                ctx,
                amount=round(max(amount, 1.0), 2),
                card=card,
                billing=home,
                shipping=-1,
                qty=1 + int(self.rng.poisson(1.0)),
                aux=int(self.rng.choice(POS_CATEGORIES)),
            )
            t += int(self.uniform(5, 40 if cloned else 90) * MINUTE_US)
            if not cloned:
                store = country * 1000 + int(self.rng.integers(40, 999))

    def velocity_burst(self) -> None:
        """Several orders in a short time on a compromised account, to cash out fast."""
        subtle = self.r() < 0.3
        name = "velocity_burst_subtle" if subtle else "velocity_burst"
        t = self.anchor(3 * HOUR_US)
        u = self.victim(t)
        if u is None:
            return
        home = int(self.pop.home[u])
        if subtle or self.r() < 0.4:
            device, kind, ip = self.known_device(u)
        else:
            device, kind, ip = self.new_id(), int(self.rng.integers(0, 2)), self.new_id()
        ctx = {"user": u, "source": kind, "device": device, "ip": ip, "country": home}
        if not subtle:
            self.rows.add(ts=t, etype=LOGIN, **ctx)
        n = int(self.rng.integers(2, 4)) if subtle else int(self.rng.integers(3, 9))
        span = self.uniform(40, 120) * MINUTE_US if subtle else self.uniform(8, 50) * MINUTE_US
        ship = home if subtle or self.r() < 0.5 else self.origin(home)
        card = self.known_card(u)
        t = self.browse(t + MINUTE_US, ctx, careful=subtle)
        for k in range(n):
            if subtle and k:
                t = self.browse(t, ctx, careful=True)
            if self.r() < (0.1 if subtle else 0.4):
                card = self.new_id()
            amount = self.usual_amount(u) * (
                self.uniform(1.2, 2.4) if subtle else self.uniform(1.0, 3.0)
            )
            self.purchase(
                name,
                t,
                ctx,
                amount=round(amount, 2),
                card=card,
                billing=home,
                shipping=ship,
                qty=1 + int(self.rng.poisson(0.5)),
                aux=self.risky_category(0.6 if not subtle else 0.4, u),
            )
            t += int(self.rng.exponential(span / n)) + 20 * US

    def unusual_hours(self) -> None:
        """A purchase in the small hours of a user who shops by day."""
        subtle = self.r() < 0.3
        name = "unusual_hours_subtle" if subtle else "unusual_hours"
        for _ in range(20):
            t0 = self.anchor(HOUR_US)
            u = self.victim(t0)
            if u is None or self.pop.night_owl[u]:
                continue
            tz = COUNTRY_TZ[int(self.pop.home[u])]
            day = t0 // DAY_US
            t = day * DAY_US + int((self.uniform(1.0, 5.0) - tz) % 24 * HOUR_US)
            if self.config.start_us <= t < self.config.end_us - 10 * MINUTE_US:
                break
        else:
            return
        home = int(self.pop.home[u])
        if subtle or self.r() < 0.4:
            device, kind, ip = self.known_device(u)
        else:
            device, kind, ip = self.new_id(), int(self.rng.integers(0, 2)), self.new_id()
        ctx = {"user": u, "source": kind, "device": device, "ip": ip, "country": home}
        t = self.browse(t, ctx, careful=self.r() < (0.7 if subtle else 0.3))
        amount = self.usual_amount(u) * (
            self.uniform(1.2, 2.5) if subtle else self.uniform(2.0, 6.0)
        )
        ship = home if subtle or self.r() < 0.6 else self.origin(home)
        card = self.known_card(u) if self.r() < 0.7 else self.new_id()
        self.purchase(
            name,
            t,
            ctx,
            amount=round(amount, 2),
            card=card,
            billing=home,
            shipping=ship,
            qty=1 + int(self.rng.poisson(0.5)),
            aux=self.risky_category(0.6, u),
        )


# Incident weights ∝ wanted share of fraud purchases ÷ purchases per incident (the
# compromised terminals' share is taken before these, from the legitimate traffic).
_MIX: tuple[tuple[str, float], ...] = (
    ("card_testing", 0.15 / 6.8),
    ("account_takeover", 0.15 / 1.3),
    ("stolen_card", 0.17 / 1.0),
    ("velocity_burst", 0.10 / 4.5),
    ("unusual_hours", 0.09 / 1.0),
    ("card_present", 0.10 / 1.8),
    ("fraud_ring", 0.07 / 20.0),
    ("card_testing_ring", 0.05 / 35.0),
)


def fraud_incidents(
    pop: Population, config: SimulatorConfig, rng: np.random.Generator, wanted_purchases: int
) -> Incidents:
    """Generate incidents until about ``wanted_purchases`` fraud purchases exist."""
    gen = IncidentGen(pop, config, rng)
    kinds: dict[str, Callable[[], None]] = {
        "card_testing": gen.card_testing,
        "account_takeover": gen.account_takeover,
        "stolen_card": gen.stolen_card,
        "velocity_burst": gen.velocity_burst,
        "unusual_hours": gen.unusual_hours,
        "card_present": gen.card_present,
        "fraud_ring": lambda: fraud_ring(gen),
        "card_testing_ring": lambda: card_testing_ring(gen),
    }
    names = [n for n, _ in _MIX]
    p = np.array([w for _, w in _MIX])
    p /= p.sum()
    attempts = 0
    while sum(gen.purchases.values()) < wanted_purchases and attempts < wanted_purchases * 20 + 50:
        attempts += 1
        kinds[names[int(rng.choice(len(names), p=p))]]()
    frame = gen.rows.frame()
    frame.cols["ts"] += frame.cols["ts"] % US == 0
    # The last incident may overshoot (a card-testing burst is long): cut its tail, so
    # the share is what was asked for however small the run.
    fraud_rows = np.flatnonzero(frame.cols["fraud"])
    excess = len(fraud_rows) - wanted_purchases
    if excess > 0:
        cut = fraud_rows[-excess:]
        for tag in frame.cols["tag"][cut].tolist():
            gen.purchases[TAG_NAMES[tag]] -= 1
        frame = frame.take(np.setdiff1d(np.arange(len(frame)), cut))
    return Incidents(frame=frame, accounts=gen.accounts, purchases=gen.purchases)
