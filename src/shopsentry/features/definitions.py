"""The feature definitions: what each feature means, how state is updated, and how a
purchase's vector is read from the state *before* it.

This is the one place a feature is defined. The hot path calls :func:`feature_vector`
then :func:`observe_purchase` per purchase and :func:`observe_behavior` per behaviour
event; the offline path (:mod:`.offline`) replays a history through the very same
functions, point in time, so training and serving cannot disagree.

Missing values are NaN (XGBoost's missing-value handling), never a made-up default:
"no previous purchase" is not "a previous purchase of 0".

Written for speed (a few microseconds per event): epoch-second floats, one pass over
each window, no datetime arithmetic and no pydantic copies.
"""

from __future__ import annotations

import math
from typing import Any, get_args

from shopsentry.events.schema import PaymentMethod, Purchase
from shopsentry.features.state import (
    BROWSE_WINDOW_S,
    DAY_S,
    MAX_CARDS_PER_DEVICE,
    MAX_COUNTRIES,
    MAX_DEVICES_WITH_CARDS,
    MAX_EVENTS,
    MAX_RECENT,
    MAX_SEEN,
    WINDOW_S,
    BehaviorState,
    PurchaseState,
    append_window,
    count,
    remember,
)

NAN = math.nan

# Name → what it means (used by model cards and reason codes). Order = column order.
FEATURES: tuple[tuple[str, str], ...] = (
    # The seed's eight features.
    ("amount", "purchase amount"),
    ("hour_of_day", "hour of the purchase (UTC)"),
    ("day_of_week", "day of the week (Monday = 0, UTC)"),
    ("user_avg_amount", "the user's average purchase before this one"),
    ("purchase_frequency", "the user's purchases per day since their first purchase"),
    ("days_since_last_purchase", "days since the user's previous purchase"),
    ("item_count", "items in the cart"),
    ("payment_method", "payment method (encoded)"),
    # Velocity.
    ("purchases_10m", "the user's purchases in the previous 10 minutes"),
    ("purchases_1h", "the user's purchases in the previous hour"),
    ("purchases_24h", "the user's purchases in the previous 24 hours"),
    ("amount_10m", "amount the user spent in the previous 10 minutes"),
    ("amount_1h", "amount the user spent in the previous hour"),
    ("amount_24h", "amount the user spent in the previous 24 hours"),
    ("amount_ratio", "amount ÷ the user's average purchase"),
    ("amount_vs_max", "amount ÷ the user's largest purchase so far"),
    ("purchase_count", "the user's purchases so far"),
    # Novelty.
    ("new_device", "device never seen for this user (purchases or behaviour)"),
    ("new_purchase_device", "device never used for a purchase by this user"),
    ("new_card", "card never used by this user"),
    ("card_added_minutes", "minutes since this card was added to the account"),
    ("new_country", "country never seen for this user"),
    ("new_ip", "IP never seen for this user"),
    ("billing_ne_shipping", "shipping country differs from billing country"),
    ("shipping_ne_home", "shipping country differs from the user's usual billing country"),
    ("country_ne_home", "purchase country differs from the user's usual billing country"),
    ("new_shipping_country", "shipping country never used by this user"),
    ("cards_on_device", "distinct cards this user has used on this device (with this one)"),
    ("cards_24h", "distinct cards in the user's purchases of the last 24 hours (with this one)"),
    (
        "devices_24h",
        "distinct devices in the user's purchases of the last 24 hours (with this one)",
    ),
    # Behaviour context.
    ("failed_logins_1h", "failed logins in the previous hour"),
    ("failed_logins_24h", "failed logins in the previous 24 hours"),
    ("logins_24h", "logins in the previous 24 hours"),
    ("minutes_since_password_change", "minutes since the password was changed"),
    ("minutes_since_address_change", "minutes since an address was changed"),
    ("ships_to_changed_address", "ships to the country of the last address change"),
    ("minutes_since_new_device_login", "minutes since a login from a device new to the user"),
    ("minutes_since_new_country_login", "minutes since a login from a country new to the user"),
    ("minutes_since_payment_method_added", "minutes since a payment method was added"),
    ("browse_events_30m", "page views and searches in the previous 30 minutes"),
    ("cart_adds_30m", "add-to-cart events in the previous 30 minutes"),
    ("seconds_since_last_behavior", "seconds since the user's previous behaviour event"),
    ("account_age_days", "days since the user was first seen"),
    ("hour_share_purchases", "share of the user's purchases within an hour of this hour of day"),
    ("hour_share_activity", "share of the user's earlier activity within an hour of this hour"),
    ("source", "channel (web = 0, mobile = 1, pos = 2)"),
    ("merchant_category", "merchant category (encoded)"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
FEATURE_DESCRIPTIONS: dict[str, str] = dict(FEATURES)

PAYMENT_METHOD_CODES: dict[str, float] = {
    m: float(i) for i, m in enumerate(get_args(PaymentMethod))
}
SOURCE_CODES: dict[str, float] = {"web": 0.0, "mobile": 1.0, "pos": 2.0}
CATEGORY_VOCABULARY: tuple[str, ...] = (
    "fashion",
    "home",
    "grocery",
    "beauty",
    "sports",
    "books",
    "toys",
    "electronics",
    "gift_cards",
    "digital",
    "jewelry",
)
_CATEGORY_CODES: dict[str, float] = {c: float(i) for i, c in enumerate(CATEGORY_VOCABULARY)}
_OTHER_CATEGORY = float(len(CATEGORY_VOCABULARY))


def _hour_share(hours: list[int], total: int, hour: int) -> float:
    if total <= 0:
        return NAN
    return (hours[hour - 1] + hours[hour] + hours[(hour + 1) % 24]) / total


def _activity_hour_share(b: BehaviorState, ts: float, hour: int) -> float:
    """Share of the user's behaviour within an hour of ``hour`` of day, leaving out the
    last hour's browsing, carts and logins: the session being scored must not vouch for
    its own hour."""
    hours = b.hours
    near = hours[hour - 1] + hours[hour] + hours[(hour + 1) % 24]
    total = b.n
    for times in (b.browse, b.carts, b.logins):
        for t in reversed(times):
            if ts - t >= 3600.0:
                break
            total -= 1
            if (int(t // 3600.0) - hour + 1) % 24 <= 2:
                near -= 1
    if total <= 0:
        return NAN
    return near / total


def feature_vector(pstate: PurchaseState, bstate: BehaviorState, purchase: Purchase) -> list[float]:
    """The features of ``purchase`` from the user's state before it (NaN = missing)."""
    return vector_of(
        pstate,
        bstate,
        purchase.occurred_at.timestamp(),
        purchase.amount,
        purchase.item_count,
        purchase.payment_method,
        purchase.card_fingerprint,
        purchase.device_fingerprint,
        purchase.ip_fingerprint,
        purchase.country,
        purchase.billing_country,
        purchase.shipping_country,
        purchase.source,
        purchase.merchant_category,
    )


def vector_of(
    pstate: PurchaseState,
    bstate: BehaviorState,
    ts: float,
    amount: float,
    item_count: int,
    payment_method: str,
    card: str | None,
    device: str | None,
    ip: str | None,
    country: str,
    billing_country: str,
    shipping: str | None,
    source: str,
    category: str | None,
) -> list[float]:
    """:func:`feature_vector` on plain values (``ts`` in epoch seconds): the one
    definition both the model-based and the table-based replays call."""
    p = pstate
    b = bstate
    n = p.n
    hour = int(ts // 3600.0) % 24
    weekday = (int(ts // DAY_S) + 3) % 7  # 1970-01-01 was a Thursday

    # Purchase history and its 24 h window, one pass from the newest.
    c10 = c1h = c24 = 0
    a10 = a1h = a24 = 0.0
    n_cards24 = 0.0 if card is None else 1.0
    n_devs24 = 0.0 if device is None else 1.0
    rts = p.rts
    if rts and ts - rts[-1] < DAY_S:
        ramt, rcard, rdev = p.ramt, p.rcard, p.rdev
        cards24: set[str | None] = {card} if card is not None else set()
        devs24: set[str | None] = {device} if device is not None else set()
        for i in range(len(rts) - 1, -1, -1):
            age = ts - rts[i]
            if age >= DAY_S:
                break
            amt = ramt[i]
            c24 += 1
            a24 += amt
            if age < 3600.0:
                c1h += 1
                a1h += amt
                if age < 600.0:
                    c10 += 1
                    a10 += amt
            cards24.add(rcard[i])
            devs24.add(rdev[i])
        cards24.discard(None)
        devs24.discard(None)
        n_cards24 = float(len(cards24))
        n_devs24 = float(len(devs24))

    if n:
        avg = p.total / n
        first = p.first_ts
        frequency = n / max((ts - first) / DAY_S, 1.0) if first is not None else NAN
        since_last = (ts - p.last_ts) / DAY_S if p.last_ts is not None else NAN
        ratio = amount / avg if avg > 0 else NAN
        vs_max = amount / p.max_amount if p.max_amount > 0 else NAN
        billing = p.billing
        home: str | None = max(billing, key=billing.__getitem__) if billing else None
    else:
        avg = frequency = since_last = ratio = vs_max = NAN
        home = None

    if device is None:
        new_device = new_pdevice = NAN
        cards_on_device = NAN
    else:
        in_p = device in p.devices
        new_pdevice = 0.0 if in_p else 1.0
        new_device = 0.0 if in_p or device in b.devices else 1.0
        seen_cards = p.dev_cards.get(device)
        if seen_cards is None:
            cards_on_device = 1.0 if card is not None else 0.0
        else:
            cards_on_device = float(len(seen_cards) + (card is not None and card not in seen_cards))
    if card is None:
        new_card = card_added = NAN
    else:
        new_card = 0.0 if card in p.cards else 1.0
        added = b.pm_cards.get(card)
        card_added = (ts - added) / 60.0 if added is not None else NAN
    new_country = 0.0 if country in p.countries or country in b.countries else 1.0
    new_ip = NAN if ip is None else (0.0 if ip in p.ips or ip in b.ips else 1.0)
    if shipping is None:
        billing_ne_shipping = ship_ne_home = new_ship = ships_to_changed = NAN
    else:
        billing_ne_shipping = 1.0 if shipping != billing_country else 0.0
        ship_ne_home = NAN if home is None else (1.0 if shipping != home else 0.0)
        new_ship = 0.0 if shipping in p.shipping else 1.0
        ships_to_changed = 1.0 if b.addr_country == shipping else 0.0
    country_ne_home = NAN if home is None else (1.0 if country != home else 0.0)

    # Behaviour context.
    f1h = f24 = 0
    for t in reversed(b.failed):
        age = ts - t
        if age >= DAY_S:
            break
        f24 += 1
        if age < 3600.0:
            f1h += 1
    logins24 = 0
    for t in reversed(b.logins):
        if ts - t >= DAY_S:
            break
        logins24 += 1
    browse30 = 0
    for t in reversed(b.browse):
        if ts - t >= 1800.0:
            break
        browse30 += 1
    carts30 = 0
    for t in reversed(b.carts):
        if ts - t >= 1800.0:
            break
        carts30 += 1
    pwd = (ts - b.pwd_ts) / 60.0 if b.pwd_ts is not None else NAN
    addr = (ts - b.addr_ts) / 60.0 if b.addr_ts is not None else NAN
    newdev = (ts - b.newdev_ts) / 60.0 if b.newdev_ts is not None else NAN
    newctry = (ts - b.newctry_ts) / 60.0 if b.newctry_ts is not None else NAN
    pm_added = (ts - b.pm_ts) / 60.0 if b.pm_ts is not None else NAN
    since_behavior = ts - b.last_ts if b.last_ts is not None else NAN
    first_p, first_b = p.first_ts, b.first_ts
    if first_p is None:
        age_days = NAN if first_b is None else (ts - first_b) / DAY_S
    else:
        age_days = (ts - (first_p if first_b is None or first_p < first_b else first_b)) / DAY_S

    return [
        amount,
        float(hour),
        float(weekday),
        avg,
        frequency if n else 0.0,
        since_last,
        float(item_count),
        PAYMENT_METHOD_CODES[payment_method],
        float(c10),
        float(c1h),
        float(c24),
        a10,
        a1h,
        a24,
        ratio,
        vs_max,
        float(n),
        new_device,
        new_pdevice,
        new_card,
        card_added,
        new_country,
        new_ip,
        billing_ne_shipping,
        ship_ne_home,
        country_ne_home,
        new_ship,
        cards_on_device,
        n_cards24,
        n_devs24,
        float(f1h),
        float(f24),
        float(logins24),
        pwd,
        addr,
        ships_to_changed,
        newdev,
        newctry,
        pm_added,
        float(browse30),
        float(carts30),
        since_behavior,
        age_days,
        _hour_share(p.hours, n, hour),
        _activity_hour_share(b, ts, hour),
        SOURCE_CODES[source],
        NAN if category is None else _CATEGORY_CODES.get(category, _OTHER_CATEGORY),
    ]


def observe_purchase(pstate: PurchaseState, purchase: Purchase) -> None:
    """Fold ``purchase`` into the purchase-side state (after its features were read)."""
    observe_purchase_of(
        pstate,
        purchase.occurred_at.timestamp(),
        purchase.amount,
        purchase.card_fingerprint,
        purchase.device_fingerprint,
        purchase.ip_fingerprint,
        purchase.country,
        purchase.billing_country,
        purchase.shipping_country,
    )


def observe_purchase_of(
    pstate: PurchaseState,
    ts: float,
    amount: float,
    card: str | None,
    device: str | None,
    ip: str | None,
    country: str,
    billing_country: str,
    shipping: str | None,
) -> None:
    """:func:`observe_purchase` on plain values."""
    p = pstate
    p.n += 1
    p.total += amount
    if amount > p.max_amount:
        p.max_amount = amount
    if p.first_ts is None:
        p.first_ts = ts
    if p.last_ts is None or ts > p.last_ts:
        p.last_ts = ts
    rts = p.rts
    rts.append(ts)
    p.ramt.append(amount)
    p.rcard.append(card)
    p.rdev.append(device)
    horizon = ts - WINDOW_S
    drop = 0
    while drop < len(rts) and rts[drop] <= horizon:
        drop += 1
    if len(rts) - drop > MAX_RECENT:
        drop = len(rts) - MAX_RECENT
    if drop:
        del rts[:drop], p.ramt[:drop], p.rcard[:drop], p.rdev[:drop]
    if device is not None:
        remember(p.devices, device, ts, MAX_SEEN)
        if card is not None:
            dev_cards = p.dev_cards
            cards = dev_cards.pop(device, None)
            if cards is None:
                cards = []
            if card not in cards:
                cards.append(card)
                if len(cards) > MAX_CARDS_PER_DEVICE:
                    del cards[0]
            dev_cards[device] = cards
            if len(dev_cards) > MAX_DEVICES_WITH_CARDS:
                del dev_cards[next(iter(dev_cards))]
    if card is not None:
        remember(p.cards, card, ts, MAX_SEEN)
    if ip is not None:
        remember(p.ips, ip, ts, MAX_SEEN)
    count(p.countries, country, MAX_COUNTRIES)
    count(p.billing, billing_country, MAX_COUNTRIES)
    if shipping is not None:
        count(p.shipping, shipping, MAX_COUNTRIES)
    p.hours[int(ts // 3600.0) % 24] += 1


def observe_behavior(bstate: BehaviorState, event: Any) -> None:
    """Fold one behaviour event (page view, search, add-to-cart, login, failed login,
    password change, address change, payment method added) into the behaviour state."""
    kind = event.event_type
    observe_behavior_of(
        bstate,
        event.occurred_at.timestamp(),
        kind,
        event.device_fingerprint,
        event.ip_fingerprint,
        event.country,
        event.new_country if kind == "address_change" else None,
        event.card_fingerprint if kind == "payment_method_added" else None,
    )


def observe_behavior_of(
    bstate: BehaviorState,
    ts: float,
    kind: str,
    device: str | None,
    ip: str | None,
    country: str | None,
    new_country: str | None,
    card: str | None,
) -> None:
    """:func:`observe_behavior` on plain values (``new_country`` of an address change,
    ``card`` of an added payment method)."""
    b = bstate
    if kind == "page_view" or kind == "search":
        append_window(b.browse, ts, BROWSE_WINDOW_S, MAX_EVENTS)
    elif kind == "add_to_cart":
        append_window(b.carts, ts, BROWSE_WINDOW_S, MAX_EVENTS)
    elif kind == "login":
        # "New" only against a history: an account's very first login is not a signal.
        if b.n:
            if device is not None and device not in b.devices:
                b.newdev_ts = ts
            if country is not None and country not in b.countries:
                b.newctry_ts = ts
        append_window(b.logins, ts, WINDOW_S, MAX_EVENTS)
    elif kind == "failed_login":
        append_window(b.failed, ts, WINDOW_S, MAX_EVENTS)
    elif kind == "password_change":
        b.pwd_ts = ts
    elif kind == "address_change":
        b.addr_ts = ts
        b.addr_country = new_country
    elif kind == "payment_method_added":
        b.pm_ts = ts
        if card is not None:
            remember(b.pm_cards, card, ts, MAX_SEEN)
    b.n += 1
    if b.first_ts is None:
        b.first_ts = ts
    if b.last_ts is None or ts > b.last_ts:
        b.last_ts = ts
    b.hours[int(ts // 3600.0) % 24] += 1
    if kind == "failed_login":
        return  # a failed login proves nothing about the device: it stays unknown
    if device is not None:
        remember(b.devices, device, ts, MAX_SEEN)
    if ip is not None:
        remember(b.ips, ip, ts, MAX_SEEN)
    if country is not None:
        count(b.countries, country, MAX_COUNTRIES)
