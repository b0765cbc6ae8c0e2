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
:mod:`.rings`; what every scenario draws with (a victim, a known device, an amount near
the user's norm, the browsing before checkout) is in :mod:`.incidents`.

Fraud sessions browse less than real customers (half of them go straight to checkout),
buy risky categories more often, and happen at any hour.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shopsentry.simulator.config import (
    ADDRESS_CHANGE,
    CARD,
    COUNTRIES,
    COUNTRY_TZ,
    DAY_US,
    FAILED_LOGIN,
    HOUR_US,
    LOGIN,
    PASSWORD_CHANGE,
    PM_ADDED,
    POS_CATEGORIES,
    TAG_NAMES,
    US,
    SimulatorConfig,
)
from shopsentry.simulator.incidents import MINUTE_US, FraudAccount, IncidentGen, Incidents
from shopsentry.simulator.population import Population
from shopsentry.simulator.rings import card_testing_ring, fraud_ring
from shopsentry.simulator.traffic import store_terminal

__all__ = ["FraudAccount", "FraudScenarios", "IncidentGen", "Incidents", "fraud_incidents"]


class FraudScenarios(IncidentGen):
    """The scenarios of this module, each one incident per call, drawn with the
    toolkit of :class:`~shopsentry.simulator.incidents.IncidentGen`."""

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
            self._stolen_card_ordinary(name, t, card)
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

    def _stolen_card_ordinary(self, name: str, t: int, card: int) -> None:
        """The ordinary variant of :meth:`stolen_card`: the new card on the victim's own
        device, at home, for an amount near the norm, shipped to the victim's address."""
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
            t = self.browse(t + int(self.uniform(0.2, 10) * MINUTE_US), ctx, careful=self.r() < 0.5)
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
    gen = FraudScenarios(pop, config, rng)
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
