"""The simulated customers: who they are and how they usually behave.

Each user has a home country, one to three devices (browser or phone), one to three
cards, a spending profile (log-normal amounts), active hours in local time, a mix of
web / mobile / POS shopping, and possibly a life event during the run (a trip abroad, a
new phone, a new card). All of it is drawn in numpy arrays at once, so 20,000 users cost
milliseconds. Fraudsters' fresh accounts are appended later by the scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsentry.simulator.config import (
    CATEGORY_WEIGHTS,
    COUNTRIES,
    COUNTRY_TZ,
    DAY_US,
    HOUR_US,
    SimulatorConfig,
)

MAX_DEVICES = 3
MAX_CARDS = 3
NEVER = np.iinfo(np.int64).max  # "no such life event in this run"
WEB, MOBILE = 0, 1


def new_ids(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Random 62-bit identifiers (devices, cards, IPs); formatted as hex when rendered."""
    return rng.integers(1, 2**62, size=size, dtype=np.int64)


@dataclass
class Population:
    """Column arrays, one row per user (index = user number)."""

    n: int
    home: np.ndarray  # int16 country index
    tz: np.ndarray  # int8 UTC offset hours of home
    created_us: np.ndarray  # int64 account creation time
    activity: np.ndarray  # float64 relative session rate
    mu: np.ndarray  # float64 mean log amount
    sigma: np.ndarray  # float64 sd of log amount
    peak_hour: np.ndarray  # float64 local hour of peak activity
    hour_sd: np.ndarray  # float64 spread of activity hours
    night_owl: np.ndarray  # bool
    p_pos: np.ndarray  # float64 share of sessions in a shop (POS)
    primary_pm: np.ndarray  # int8 payment method mostly used online
    fav_category: np.ndarray  # int8
    n_devices: np.ndarray  # int8
    devices: np.ndarray  # int64 (n, MAX_DEVICES)
    device_kind: np.ndarray  # int8 (n, MAX_DEVICES): WEB or MOBILE
    device_ip: np.ndarray  # int64 (n, MAX_DEVICES): the usual home IP per device
    n_cards: np.ndarray  # int8
    cards: np.ndarray  # int64 (n, MAX_CARDS)
    store: np.ndarray  # int64 favourite POS terminal
    # Life events (NEVER when absent)
    phone_switch_us: np.ndarray  # new phone from then on (replaces slot phone_slot)
    phone_slot: np.ndarray
    new_phone: np.ndarray
    card_add_us: np.ndarray  # a new card added from then on
    new_card: np.ndarray
    trip_start_us: np.ndarray
    trip_end_us: np.ndarray
    trip_country: np.ndarray
    trip_ip: np.ndarray


def build_population(config: SimulatorConfig, rng: np.random.Generator) -> Population:
    n = config.users
    weights = np.array([w for _, _, w in COUNTRIES])
    home = rng.choice(len(COUNTRIES), size=n, p=weights / weights.sum()).astype(np.int16)
    tz = np.asarray(COUNTRY_TZ, dtype=np.int8)[home]
    start, end = config.start_us, config.end_us
    span = end - start

    # Most accounts exist before the run (up to two years old); a few sign up during it.
    created = start - (rng.uniform(1, 730, size=n) * DAY_US).astype(np.int64)
    signup = rng.random(n) < 0.04
    created[signup] = start + (rng.random(int(signup.sum())) * span).astype(np.int64)

    activity = np.clip(rng.lognormal(0.0, 0.8, size=n), 0.05, 12.0)
    activity /= activity.mean()
    mu = rng.normal(np.log(55.0), 0.6, size=n)
    sigma = rng.uniform(0.25, 0.6, size=n)

    night_owl = rng.random(n) < 0.08
    peak = rng.normal(15.5, 3.0, size=n) % 24
    peak[night_owl] = rng.uniform(22.5, 27.5, size=int(night_owl.sum())) % 24
    hour_sd = rng.uniform(1.2, 3.2, size=n)

    p_pos = np.where(rng.random(n) < 0.25, rng.uniform(0.1, 0.6, size=n), 0.0)
    primary_pm = rng.choice(6, size=n, p=[0.66, 0.13, 0.09, 0.06, 0.03, 0.03]).astype(np.int8)
    cw = np.asarray(CATEGORY_WEIGHTS, dtype=float)
    fav_category = rng.choice(len(cw), size=n, p=cw / cw.sum()).astype(np.int8)

    n_devices = (1 + rng.binomial(2, 0.3, size=n)).astype(np.int8)
    devices = new_ids(rng, (n, MAX_DEVICES))
    device_kind = (rng.random((n, MAX_DEVICES)) < 0.55).astype(np.int8)
    device_ip = new_ids(rng, (n, MAX_DEVICES))
    n_cards = (1 + rng.binomial(2, 0.2, size=n)).astype(np.int8)
    cards = new_ids(rng, (n, MAX_CARDS))
    store = home.astype(np.int64) * 1000 + rng.integers(0, 40, size=n)

    # Life events: probabilities are per 30 days, scaled to the run's length.
    months = max(span / (30 * DAY_US), 1e-9)

    def happens(p_month: float) -> tuple[np.ndarray, np.ndarray]:
        hit = rng.random(n) < 1 - (1 - p_month) ** months
        at = np.full(n, NEVER, dtype=np.int64)
        at[hit] = start + (rng.random(int(hit.sum())) * span).astype(np.int64)
        at = np.where(hit, np.maximum(at, created + HOUR_US), NEVER)
        return hit, at

    _, phone_switch = happens(0.13)
    phone_slot = rng.integers(0, n_devices)
    new_phone = new_ids(rng, n)
    _, card_add = happens(0.11)
    new_card = new_ids(rng, n)
    trip_hit, trip_start = happens(0.06)
    trip_len = (rng.uniform(2, 10, size=n) * DAY_US).astype(np.int64)
    trip_end = np.where(trip_hit, trip_start + trip_len, NEVER)
    abroad = (home + rng.integers(1, len(COUNTRIES), size=n)) % len(COUNTRIES)
    trip_country = abroad.astype(np.int16)

    return Population(
        n=n,
        home=home,
        tz=tz,
        created_us=created,
        activity=activity,
        mu=mu,
        sigma=sigma,
        peak_hour=peak,
        hour_sd=hour_sd,
        night_owl=night_owl,
        p_pos=p_pos,
        primary_pm=primary_pm,
        fav_category=fav_category,
        n_devices=n_devices,
        devices=devices,
        device_kind=device_kind,
        device_ip=device_ip,
        n_cards=n_cards,
        cards=cards,
        store=store,
        phone_switch_us=phone_switch,
        phone_slot=phone_slot,
        new_phone=new_phone,
        card_add_us=card_add,
        new_card=new_card,
        trip_start_us=trip_start,
        trip_end_us=trip_end,
        trip_country=trip_country,
        trip_ip=new_ids(rng, n),
    )
