"""The events that mark a customer's life event, as it starts inside the run window.

:mod:`.population` draws each user's life events (a trip abroad, a switch to a new
phone, a new card) and :mod:`.traffic` lets them shape the ordinary sessions after
them; this module writes the events a life event begins with: the first login from the
new phone, the card being added, the login abroad, each often followed by a short
legitimate checkout tagged as that hard case (``new_phone``, ``new_card``, ``travel``).
These are the legitimate twins of account takeover and stolen cards.
"""

from __future__ import annotations

import numpy as np

from shopsentry.simulator.config import (
    ADD_TO_CART,
    CARD,
    CATEGORY_WEIGHTS,
    FAILED_LOGIN,
    HOUR_US,
    LOGIN,
    PAGE_VIEW,
    PASSWORD_CHANGE,
    PM_ADDED,
    PURCHASE,
    TAG_OF,
    US,
    SimulatorConfig,
)
from shopsentry.simulator.frame import Frame, RowBuilder
from shopsentry.simulator.population import MOBILE, Population

__all__ = ["life_event_markers"]


def _checkout(
    rows: RowBuilder,
    rng: np.random.Generator,
    pop: Population,
    u: int,
    t: int,
    common: dict[str, int],
    card: int,
    shipping: int,
    tag: str,
) -> None:
    """A short legitimate session ending in an ordinary purchase (used after a life event)."""
    for _ in range(int(rng.integers(0, 4))):
        t += int(rng.exponential(30.0) * US) + US
        rows.add(ts=t, etype=PAGE_VIEW, aux=int(rng.integers(100_000)), **common)
    amount = round(float(np.exp(rng.normal(pop.mu[u], pop.sigma[u]))), 2)
    t += int(rng.exponential(20.0) * US) + US
    rows.add(
        ts=t, etype=ADD_TO_CART, aux=int(rng.integers(100_000)), qty=1, amount=amount, **common
    )
    t += int(rng.exponential(40.0) * US) + US
    category = (
        int(pop.fav_category[u])
        if rng.random() < 0.5
        else int(rng.integers(0, len(CATEGORY_WEIGHTS)))
    )
    rows.add(
        ts=t,
        etype=PURCHASE,
        amount=max(amount, 1.0),
        qty=1 + int(rng.poisson(0.5)),
        pm=CARD,
        card=card,
        billing=int(pop.home[u]),
        shipping=shipping,
        addr=int(pop.address[u]) if shipping == pop.home[u] else int(rng.integers(1, 2**62)),
        aux=category,
        tag=TAG_OF[tag],
        **common,
    )


def life_event_markers(pop: Population, config: SimulatorConfig, rng: np.random.Generator) -> Frame:
    """The events that start a life event: the first login from a new phone (sometimes
    after a forgotten password and a reset), the card being added, the login abroad."""
    rows = RowBuilder()
    start, end = config.start_us, config.end_us
    _new_phone_markers(rows, pop, rng, start, end)
    _new_card_markers(rows, pop, rng, start, end)
    _trip_markers(rows, pop, rng, start, end)
    frame = rows.frame()
    keep = (
        (frame.cols["ts"] >= start)
        & (frame.cols["ts"] < end)
        & (pop.created_us[frame.cols["user"]] <= frame.cols["ts"])
    )
    frame = frame.take(np.flatnonzero(keep))
    frame.cols["ts"] += frame.cols["ts"] % US == 0
    return frame


def _new_phone_markers(
    rows: RowBuilder, pop: Population, rng: np.random.Generator, start: int, end: int
) -> None:
    """A switch to a new phone in the window: its first login (now and then after a
    mistyped password and a reset), a page view, and often a first purchase."""
    for u in np.flatnonzero((pop.phone_switch_us >= start) & (pop.phone_switch_us < end)).tolist():
        t = int(pop.phone_switch_us[u])
        common = {
            "user": u,
            "source": MOBILE,
            "device": int(pop.new_phone[u]),
            "ip": int(pop.device_ip[u, 0]) if rng.random() < 0.5 else int(rng.integers(1, 2**62)),
            "country": int(pop.home[u]),
        }
        if rng.random() < 0.3:
            rows.add(ts=t - 90 * US, etype=FAILED_LOGIN, aux=0, **common)
            if rng.random() < 0.5:
                rows.add(ts=t - 40 * US, etype=PASSWORD_CHANGE, **common)
        rows.add(ts=t, etype=LOGIN, **common)
        rows.add(ts=t + 20 * US, etype=PAGE_VIEW, aux=int(rng.integers(100_000)), **common)
        if rng.random() < 0.6:  # the new phone's first session ends in a purchase
            card = int(pop.cards[u, int(rng.integers(0, pop.n_cards[u]))])
            _checkout(rows, rng, pop, u, t + 30 * US, common, card, int(pop.home[u]), "new_phone")


def _new_card_markers(
    rows: RowBuilder, pop: Population, rng: np.random.Generator, start: int, end: int
) -> None:
    """A new card in the window: usually a "payment method added" event, and often a
    purchase with it at once."""
    for u in np.flatnonzero((pop.card_add_us >= start) & (pop.card_add_us < end)).tolist():
        t = int(pop.card_add_us[u])
        # A reissued card (expiry, a bank's replacement) just shows up at checkout with
        # no "payment method added" event, exactly as a stolen card typed in would.
        if rng.random() < 0.8:
            rows.add(
                ts=t,
                user=u,
                etype=PM_ADDED,
                source=int(pop.device_kind[u, 0]),
                device=int(pop.devices[u, 0]),
                ip=int(pop.device_ip[u, 0]),
                country=int(pop.home[u]),
                pm=CARD,
                card=int(pop.new_card[u]),
            )
        if rng.random() < 0.7:  # added at checkout, used at once
            common = {
                "user": u,
                "source": int(pop.device_kind[u, 0]),
                "device": int(pop.devices[u, 0]),
                "ip": int(pop.device_ip[u, 0]),
                "country": int(pop.home[u]),
            }
            home = int(pop.home[u])
            later = t + int(rng.uniform(0.2, 10) * 60 * US)
            _checkout(rows, rng, pop, u, later, common, int(pop.new_card[u]), home, "new_card")


def _trip_markers(
    rows: RowBuilder, pop: Population, rng: np.random.Generator, start: int, end: int
) -> None:
    """A trip starting in the window: the login abroad on one of the user's devices, and
    sometimes a purchase right after landing."""
    for u in np.flatnonzero((pop.trip_start_us >= start) & (pop.trip_start_us < end)).tolist():
        t = int(pop.trip_start_us[u]) + int(rng.uniform(0, 12) * HOUR_US)
        slot = int(rng.integers(0, pop.n_devices[u]))
        dev = (
            int(pop.new_phone[u])
            if t >= pop.phone_switch_us[u] and slot == pop.phone_slot[u]
            else int(pop.devices[u, slot])
        )
        rows.add(
            ts=t,
            user=u,
            etype=LOGIN,
            source=int(pop.device_kind[u, slot]),
            device=dev,
            ip=int(pop.trip_ip[u]),
            country=int(pop.trip_country[u]),
        )
        if rng.random() < 0.3:  # landed, logged in, bought something at once
            common = {
                "user": u,
                "source": int(pop.device_kind[u, slot]),
                "device": dev,
                "ip": int(pop.trip_ip[u]),
                "country": int(pop.trip_country[u]),
            }
            card = int(pop.cards[u, int(rng.integers(0, pop.n_cards[u]))])
            ship = int(pop.trip_country[u]) if rng.random() < 0.4 else int(pop.home[u])
            _checkout(rows, rng, pop, u, t + 15 * US, common, card, ship, "travel")
