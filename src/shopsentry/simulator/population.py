"""The simulated customers: who they are and how they usually behave.

Each user has a home country, one to three devices (browser or phone), one to three
cards, a spending profile (log-normal amounts), active hours in local time, a mix of
web / mobile / POS shopping, and possibly a life event during the run (a trip abroad, a
new phone, a new card). Some share a family tablet, a campus IP or a reshipper's
address with others (the honest side of the entity scenarios). All of it is drawn in
numpy arrays at once, so 20,000 users cost milliseconds. Fraudsters' fresh accounts are
appended later by the scenarios.
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
    # Entities shared by honest customers (-1 when the user has none): the family
    # tablet (device slot 0, with the household's IP and address), the campus or office
    # IP (on device slot 0), the reshipper that forwards the user's web orders.
    address: np.ndarray  # int64 home shipping address
    shared_device: np.ndarray
    shared_ip: np.ndarray
    reship_addr: np.ndarray
    reship_country: np.ndarray  # int16


def build_population(config: SimulatorConfig, rng: np.random.Generator) -> Population:
    """Every user of the run: habits, then life events, then the entities some share
    (the draws in this order: the run is deterministic in its seed)."""
    n = config.users
    start, span = config.start_us, config.end_us - config.start_us
    habits = _habits(n, start, span, rng)
    events = _life_events(habits, start, span, rng)
    pop = Population(
        n=n,
        **habits,
        **events,
        trip_ip=new_ids(rng, n),
        address=new_ids(rng, n),
        shared_device=np.full(n, -1, dtype=np.int64),
        shared_ip=np.full(n, -1, dtype=np.int64),
        reship_addr=np.full(n, -1, dtype=np.int64),
        reship_country=np.full(n, -1, dtype=np.int16),
    )
    _share_entities(pop, rng)
    return pop


def _habits(n: int, start: int, span: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Where each user lives, since when, how much and when they buy, with what."""
    weights = np.array([w for _, _, w in COUNTRIES])
    home = rng.choice(len(COUNTRIES), size=n, p=weights / weights.sum()).astype(np.int16)
    tz = np.asarray(COUNTRY_TZ, dtype=np.int8)[home]

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
    return {
        "home": home,
        "tz": tz,
        "created_us": created,
        "activity": activity,
        "mu": mu,
        "sigma": sigma,
        "peak_hour": peak,
        "hour_sd": hour_sd,
        "night_owl": night_owl,
        "p_pos": p_pos,
        "primary_pm": primary_pm,
        "fav_category": fav_category,
        "n_devices": n_devices,
        "devices": devices,
        "device_kind": device_kind,
        "device_ip": device_ip,
        "n_cards": n_cards,
        "cards": cards,
        "store": store,
    }


def _life_events(
    habits: dict[str, np.ndarray], start: int, span: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A new phone, a new card, a trip abroad: each at most once, after the account
    exists. Probabilities are per 30 days, scaled to the run's length."""
    n = len(habits["home"])
    created = habits["created_us"]
    months = max(span / (30 * DAY_US), 1e-9)

    def happens(p_month: float) -> tuple[np.ndarray, np.ndarray]:
        hit = rng.random(n) < 1 - (1 - p_month) ** months
        at = np.full(n, NEVER, dtype=np.int64)
        at[hit] = start + (rng.random(int(hit.sum())) * span).astype(np.int64)
        at = np.where(hit, np.maximum(at, created + HOUR_US), NEVER)
        return hit, at

    _, phone_switch = happens(0.13)
    phone_slot = rng.integers(0, habits["n_devices"])
    new_phone = new_ids(rng, n)
    _, card_add = happens(0.11)
    new_card = new_ids(rng, n)
    trip_hit, trip_start = happens(0.06)
    trip_len = (rng.uniform(2, 10, size=n) * DAY_US).astype(np.int64)
    abroad = (habits["home"] + rng.integers(1, len(COUNTRIES), size=n)) % len(COUNTRIES)
    return {
        "phone_switch_us": phone_switch,
        "phone_slot": phone_slot,
        "new_phone": new_phone,
        "card_add_us": card_add,
        "new_card": new_card,
        "trip_start_us": trip_start,
        "trip_end_us": np.where(trip_hit, trip_start + trip_len, NEVER),
        "trip_country": abroad.astype(np.int16),
    }


FAMILY_SHARE = 0.03  # users sharing a family tablet
CAMPUS_SHARE = 0.04  # users behind a campus or office IP
RESHIP_SHARE = 0.02  # users abroad whose web orders go through a reshipper
CAMPUS_SIZE = 60
RESHIPPER_COUNTRIES = (0, 1, 2)  # US, GB, DE: where forwarding services sit


def _share_entities(pop: Population, rng: np.random.Generator) -> None:
    """Make some honest customers share a device, an IP or an address (drawn after
    everything else, so the rest of the population is the same with or without them)."""
    n = pop.n
    order = rng.permutation(n)
    # Families of two to four: one tablet, one home IP, one address, one home country.
    sizes = rng.integers(2, 5, size=max(int(n * FAMILY_SHARE / 3), 1))
    sizes = sizes[np.cumsum(sizes) <= n]
    members = order[: int(sizes.sum())]
    family = np.repeat(np.arange(len(sizes)), sizes)
    head = members[np.r_[0, np.cumsum(sizes)[:-1]]][family]
    tablets, home_ips = new_ids(rng, len(sizes)), new_ids(rng, len(sizes))
    pop.devices[members, 0] = tablets[family]
    pop.device_kind[members, 0] = MOBILE
    pop.device_ip[members, :] = home_ips[family][:, None]
    pop.shared_device[members] = tablets[family]
    pop.address[members] = pop.address[head]
    pop.home[members] = pop.home[head]
    pop.tz[members] = pop.tz[head]
    rest = order[len(members) :]
    # Campuses and offices: one NAT'd IP for the laptops of a few dozen people.
    n_campus = int(n * CAMPUS_SHARE)
    campus_users = rest[:n_campus]
    campus = rng.integers(0, max(n_campus // CAMPUS_SIZE, 1), size=n_campus)
    campus_ips = new_ids(rng, int(campus.max(initial=0)) + 1)
    pop.device_ip[campus_users, 0] = campus_ips[campus]
    pop.device_kind[campus_users, 0] = WEB
    pop.shared_ip[campus_users] = campus_ips[campus]
    # Reshippers: a few forwarding addresses used by many honest customers abroad.
    abroad = rest[n_campus:]
    abroad = abroad[~np.isin(pop.home[abroad], RESHIPPER_COUNTRIES)][: int(n * RESHIP_SHARE)]
    which = rng.integers(0, len(RESHIPPER_COUNTRIES), size=len(abroad))
    pop.reship_addr[abroad] = new_ids(rng, len(RESHIPPER_COUNTRIES))[which]
    pop.reship_country[abroad] = np.asarray(RESHIPPER_COUNTRIES, dtype=np.int16)[which]
