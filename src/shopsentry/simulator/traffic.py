"""Legitimate traffic, drawn as whole numpy columns (the bulk of every run).

A *session* is one visit: maybe a login (sometimes after a mistyped password), page
views and searches, items added to the cart, and often a purchase (POS visits are a
purchase alone). Session start times follow each user's active hours in local time;
sessions are expanded to events with vectorised repeats, so a month of 20,000 users
costs seconds. The life events of :mod:`.population` (trip, new phone, new card) shape
the sessions that fall after them; their marker events (the login abroad, the login
from the new phone, the card added) are emitted by :mod:`.life_events`.
"""

from __future__ import annotations

import numpy as np

from shopsentry.simulator.config import (
    ADD_TO_CART,
    ADDRESS_CHANGE,
    CARD,
    CARD_BACKED,
    CASH,
    CATEGORY_WEIGHTS,
    COUNTRIES,
    DAY_US,
    FAILED_LOGIN,
    HOUR_US,
    LOGIN,
    PAGE_VIEW,
    PASSWORD_CHANGE,
    POS_CATEGORIES,
    PURCHASE,
    QUERIES,
    SEARCH,
    TAG_OF,
    US,
    SimulatorConfig,
)
from shopsentry.simulator.frame import Frame, filled
from shopsentry.simulator.population import MOBILE, NEVER, Population, new_ids

# Order of event kinds inside a session (columns of the per-session count matrix).
SESSION_ORDER = np.array(
    [
        FAILED_LOGIN,
        LOGIN,
        PAGE_VIEW,
        SEARCH,
        ADD_TO_CART,
        PASSWORD_CHANGE,
        ADDRESS_CHANGE,
        PURCHASE,
    ],
    dtype=np.int8,
)
POS_SOURCE = 2
CONVERSION = 0.33  # share of web/mobile sessions that end in a purchase
ODD_HOUR_SHARE = 0.1  # sessions at a random hour instead of the user's usual ones
DIRECT_CHECKOUT_SHARE = 0.15  # purchase sessions without browsing first
FRESH_BROWSER_SHARE = 0.05  # web logins from a browser the account has not seen
BUSY_STORE_SHARE = 0.2  # POS visits to the country's busy store instead of the usual one
BUSY_STORE = 998  # store number (within the country) of the busy store
RESHIP_USE = 0.7  # share of a reshipper customer's web orders sent through it


def store_terminal(store: np.ndarray | int) -> np.ndarray | int:
    """A store's terminal: shared by every customer of the shop (its device id)."""
    return store * 7919 + 104_729


def sample_session_starts(
    pop: Population, count: int, config: SimulatorConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (user, start time) pairs inside the run window, following each user's
    activity level and local active hours (rejection sampling over whole days)."""
    start, end = config.start_us, config.end_us
    day_lo = start // DAY_US - 1
    day_hi = end // DAY_US + 1
    weights = pop.activity / pop.activity.sum()
    users_out: list[np.ndarray] = []
    ts_out: list[np.ndarray] = []
    have = 0
    accept = max((end - start) / ((day_hi - day_lo + 1) * DAY_US), 1e-3)
    while have < count:
        batch = int(min(max((count - have) / accept * 1.3 + 64, 256), 5_000_000))
        users = rng.choice(pop.n, size=batch, p=weights)
        days = rng.integers(day_lo, day_hi + 1, size=batch)
        local_hour = rng.normal(pop.peak_hour[users], pop.hour_sd[users]) % 24.0
        # Now and then anyone shops at an odd hour (insomnia, a late flight, a baby).
        odd = rng.random(batch) < ODD_HOUR_SHARE
        local_hour = np.where(odd, rng.uniform(0, 24, size=batch), local_hour)
        ts = days * DAY_US + ((local_hour - pop.tz[users]) * HOUR_US).astype(np.int64)
        ok = (ts >= start) & (ts < end) & (ts >= pop.created_us[users])
        users_out.append(users[ok])
        ts_out.append(ts[ok])
        have += int(ok.sum())
        accept = max(float(ok.mean()), 1e-4)
    return np.concatenate(users_out)[:count].astype(np.int32), np.concatenate(ts_out)[:count]


def _session_counts(is_pos: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-session event counts in :data:`SESSION_ORDER` and the split-order flag."""
    s = len(is_pos)
    online = ~is_pos
    login = online & (rng.random(s) < 0.3)
    failed = np.where(login & (rng.random(s) < 0.05), 1 + rng.binomial(2, 0.3, size=s), 0)
    pages = np.where(online, 1 + rng.poisson(2.5, size=s), 0)
    searches = np.where(online, rng.poisson(0.8, size=s), 0)
    buys = is_pos | (rng.random(s) < CONVERSION)
    split = online & buys & (rng.random(s) < 0.03)
    purchases = buys.astype(np.int64) + split * rng.integers(1, 3, size=s)
    carts = np.where(online & buys, 1 + rng.binomial(3, 0.3, size=s), 0)
    # "Buy again" links, saved carts and app reorders go straight to checkout.
    direct = online & buys & (rng.random(s) < DIRECT_CHECKOUT_SHARE)
    pages = np.where(direct, 0, pages)
    searches = np.where(direct, 0, searches)
    carts = np.where(direct, rng.integers(0, 2, size=s), carts)
    pwd = online & (rng.random(s) < 0.002)
    addr = online & (rng.random(s) < 0.003)
    counts = np.stack([failed, login, pages, searches, carts, pwd, addr, purchases], axis=1).astype(
        np.int64
    )
    return counts, split


def legit_sessions(
    pop: Population, config: SimulatorConfig, rng: np.random.Generator, target_events: int | None
) -> Frame:
    """All legitimate sessions of the run as event rows (unsorted).

    ``target_events`` None: history mode, each user's natural session rate. Otherwise
    sessions are drawn until their events reach the target, so ``--rate`` is met closely.
    """
    if target_events is None:
        days = (config.end_us - config.start_us) / DAY_US
        n_sessions = int(rng.poisson(config.sessions_per_user_day * pop.n * days))
    else:
        n_sessions = int(target_events / 2.5) + 16
    users, t0 = sample_session_starts(pop, n_sessions, config, rng)
    s = len(users)

    is_pos = rng.random(s) < pop.p_pos[users]
    counts, split = _session_counts(is_pos, rng)
    where = _session_places(pop, users, t0, counts, is_pos, rng)
    device, ip, country, store, source, switched, in_trip = where
    etype, sess, ts, is_purchase = _session_events(t0, counts, rng)
    total = len(etype)
    u = users[sess]

    frame = filled(
        total,
        ts=ts,
        user=u,
        etype=etype,
        source=source[sess],
        device=device[sess],
        ip=ip[sess],
        country=country[sess],
        store=np.where(is_pos, store, -1)[sess],
    )
    cols = frame.cols
    _fill_purchases(cols, pop, rng, is_purchase, sess, is_pos, in_trip, split, switched, config)
    _fill_behaviour(cols, pop, rng, etype)
    if target_events is not None:
        # Keep whole sessions, in their random draw order, until the events that fall
        # inside the window reach the target (sessions near the end spill past it).
        inside = np.bincount(sess, weights=ts < config.end_us, minlength=s)
        keep = int(np.searchsorted(np.cumsum(inside), target_events, side="right"))
        frame = frame.take(np.flatnonzero(sess < keep))
    return frame


def _session_places(
    pop: Population,
    users: np.ndarray,
    t0: np.ndarray,
    counts: np.ndarray,
    is_pos: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    """Device, IP, country, store and source of each session (and whether it is on a
    switched phone, during a trip)."""
    s = len(users)
    slot = (rng.random(s) * pop.n_devices[users]).astype(np.int64)
    device = pop.devices[users, slot]
    kind = pop.device_kind[users, slot].astype(np.int8)
    switched = (t0 >= pop.phone_switch_us[users]) & (slot == pop.phone_slot[users])
    device = np.where(switched, pop.new_phone[users], device)
    kind = np.where(switched, MOBILE, kind).astype(np.int8)
    # A login from a browser the account has never seen (cookies cleared, a private
    # window, a work or library computer): a new device that is not fraud.
    fresh = (counts[:, 1] > 0) & (kind == 0) & (rng.random(s) < FRESH_BROWSER_SHARE)
    device = np.where(fresh, new_ids(rng, s), device)
    ip = pop.device_ip[users, slot]
    roaming = (kind == MOBILE) & (rng.random(s) < 0.35)
    ip = np.where(roaming, new_ids(rng, s), ip)
    in_trip = (t0 >= pop.trip_start_us[users]) & (t0 < pop.trip_end_us[users])
    country = np.where(in_trip, pop.trip_country[users], pop.home[users]).astype(np.int16)
    ip = np.where(in_trip, pop.trip_ip[users], ip)
    store = np.where(
        in_trip, pop.trip_country[users].astype(np.int64) * 1000 + 999, pop.store[users]
    )
    # Now and then anyone shops at the busy store of their country (a station, a mall).
    busy = is_pos & ~in_trip & (rng.random(s) < BUSY_STORE_SHARE)
    store = np.where(busy, pop.home[users].astype(np.int64) * 1000 + BUSY_STORE, store)
    terminal = store_terminal(store)
    source = np.where(is_pos, POS_SOURCE, kind).astype(np.int8)
    device = np.where(is_pos, terminal, device)
    ip = np.where(is_pos, terminal + 1, ip)
    return device, ip, country, store, source, switched, in_trip


def _session_events(
    t0: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sessions expanded to events: type, session index, time, and which are purchases."""
    s = len(t0)
    lengths = counts.sum(axis=1)
    total = int(lengths.sum())
    etype = np.repeat(np.tile(SESSION_ORDER, s), counts.ravel())
    sess = np.repeat(np.arange(s), lengths)
    gaps = rng.exponential(35.0 * US, size=total).astype(np.int64)
    first = np.zeros(s, dtype=np.int64)
    first[1:] = np.cumsum(lengths)[:-1]
    is_purchase = etype == PURCHASE
    # A second or third order in a session comes minutes after the first.
    later_order = is_purchase & (np.r_[False, etype[:-1] == PURCHASE])
    gaps = np.where(later_order, rng.uniform(90, 900, size=total) * US, gaps).astype(np.int64)
    gaps[first[lengths > 0]] = 0
    csum = np.cumsum(gaps)
    within = csum - csum[first][sess]
    ts = t0[sess] + within
    ts += ts % US == 0  # keep a fractional second, so every timestamp renders alike
    return etype, sess, ts, is_purchase


def _fill_purchases(
    cols: dict[str, np.ndarray],
    pop: Population,
    rng: np.random.Generator,
    is_purchase: np.ndarray,
    sess: np.ndarray,
    is_pos: np.ndarray,
    in_trip: np.ndarray,
    split: np.ndarray,
    switched: np.ndarray,
    config: SimulatorConfig,
) -> None:
    """The purchase columns of the legitimate rows: amount and items, payment, shipping,
    category, and the hard case (if any) each purchase is tagged with."""
    idx = np.flatnonzero(is_purchase)
    m = len(idx)
    u = cols["user"][idx]
    ps = sess[idx]
    pos = is_pos[ps]
    ts = cols["ts"][idx]

    amount = np.exp(rng.normal(pop.mu[u], pop.sigma[u]))
    amount = np.where(pos, amount * 0.6, amount)
    big = ~pos & (rng.random(m) < 0.006)
    amount = np.where(big, amount * rng.uniform(4, 12, size=m), amount)
    amount = np.clip(np.round(amount, 2), 1.0, 250_000.0)
    items = np.where(big, 1, 1 + rng.poisson(0.9, size=m))

    pm, card, uses_new, backed = _purchase_payment(pop, rng, u, pos, ts)
    home = pop.home[u]
    trip = in_trip[ps]
    shipping, addr, gift, reship = _purchase_shipping(pop, rng, u, pos, trip)

    cw = np.asarray(CATEGORY_WEIGHTS, dtype=float)
    category = np.where(
        rng.random(m) < 0.45, pop.fav_category[u], rng.choice(len(cw), size=m, p=cw / cw.sum())
    )
    category = np.where(
        pos, np.asarray(POS_CATEGORIES)[rng.integers(0, len(POS_CATEGORIES), size=m)], category
    )

    local_hour = ((ts // HOUR_US) + pop.tz[u]) % 24
    new_phone_days = (cols["device"][idx] == pop.new_phone[u]) & (
        ts - pop.phone_switch_us[u] < 7 * DAY_US
    )
    tag = np.full(m, -1, dtype=np.int16)
    # Lowest priority first, so the most telling case wins.
    tag[cols["device"][idx] == pop.shared_device[u]] = TAG_OF["shared_tablet"]
    tag[~pos & (cols["ip"][idx] == pop.shared_ip[u])] = TAG_OF["campus_ip"]
    tag[pos & (cols["store"][idx] % 1000 == BUSY_STORE)] = TAG_OF["busy_terminal"]
    tag[reship] = TAG_OF["reshipper"]
    tag[pop.night_owl[u] & (local_hour < 6)] = TAG_OF["night_owl"]
    tag[split[ps]] = TAG_OF["split_order"]
    tag[uses_new & backed] = TAG_OF["new_card"]
    tag[gift] = TAG_OF["gift_abroad"]
    tag[big] = TAG_OF["big_ticket"]
    tag[new_phone_days & switched[ps]] = TAG_OF["new_phone"]
    tag[trip] = TAG_OF["travel"]

    cols["amount"][idx] = amount
    cols["qty"][idx] = items
    cols["pm"][idx] = pm
    cols["card"][idx] = card
    cols["billing"][idx] = home
    cols["shipping"][idx] = shipping
    cols["addr"][idx] = addr
    cols["aux"][idx] = category
    cols["tag"][idx] = tag


def _purchase_payment(
    pop: Population, rng: np.random.Generator, u: np.ndarray, pos: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How each purchase is paid: the method (cash or card at a till), the card (a card
    the user has, or the new one once it exists; -1 when no card backs the method),
    whether it is the new card, and whether a card backs the method at all."""
    m = len(u)
    pm = np.where(rng.random(m) < 0.8, pop.primary_pm[u], CARD)
    pm = np.where(pos, np.where(rng.random(m) < 0.85, CARD, CASH), pm).astype(np.int8)
    card_slot = (rng.random(m) * pop.n_cards[u]).astype(np.int64)
    card = pop.cards[u, card_slot]
    uses_new = (ts >= pop.card_add_us[u]) & (rng.random(m) < 0.6)
    card = np.where(uses_new, pop.new_card[u], card)
    backed = np.isin(pm, list(CARD_BACKED))
    card = np.where(backed, card, -1)
    return pm, card, uses_new, backed


def _purchase_shipping(
    pop: Population, rng: np.random.Generator, u: np.ndarray, pos: np.ndarray, trip: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each purchase is shipped: home, a gift abroad, the trip's country or the
    reshipper; the country and address (-1 for a till purchase, carried away), and
    which are gifts and which go through the reshipper."""
    m = len(u)
    home = pop.home[u]
    gift = ~pos & (rng.random(m) < 0.03)
    other = (home + rng.integers(1, len(COUNTRIES), size=m)) % len(COUNTRIES)
    shipping = np.where(gift, other, home)
    shipping = np.where(trip & (rng.random(m) < 0.3), pop.trip_country[u], shipping)
    addr = np.where(shipping == home, pop.address[u], new_ids(rng, m))
    reship = ~pos & (pop.reship_addr[u] >= 0) & (rng.random(m) < RESHIP_USE)
    shipping = np.where(reship, pop.reship_country[u], shipping)
    addr = np.where(reship, pop.reship_addr[u], addr)
    shipping = np.where(pos, -1, shipping).astype(np.int16)
    addr = np.where(pos, -1, addr)
    return shipping, addr, gift, reship


def _fill_behaviour(
    cols: dict[str, np.ndarray], pop: Population, rng: np.random.Generator, etype: np.ndarray
) -> None:
    n = len(etype)
    aux = rng.integers(0, 100_000, size=n)
    search = etype == SEARCH
    aux[search] = rng.integers(0, len(QUERIES), size=int(search.sum()))
    failed = etype == FAILED_LOGIN
    aux[failed] = np.where(rng.random(int(failed.sum())) < 0.9, 0, 1)
    addr = etype == ADDRESS_CHANGE
    aux[addr] = 1  # shipping address
    cols["shipping"][addr] = pop.home[cols["user"][addr]]
    cart = np.flatnonzero(etype == ADD_TO_CART)
    u = cols["user"][cart]
    cols["amount"][cart] = np.round(np.exp(rng.normal(pop.mu[u] - 0.4, 0.5)), 2)
    cols["qty"][cart] = 1 + rng.binomial(2, 0.2, size=len(cart))
    cols["aux"][:] = np.where(etype == PURCHASE, cols["aux"], aux)


__all__ = ["NEVER", "legit_sessions", "sample_session_starts"]
