"""The feature definitions: what each feature means, how a purchase's row is read from the
state *before* it, and the one feature step every driver runs.

A feature belongs to one :class:`FeatureGroup` (a family the model card reports on:
amount, velocity, novelty, behaviour, context, entity). A group owns its names and the function
that computes its slice of the row, side by side, so a name cannot drift away from its
value. The row is the groups' slices in :data:`GROUPS` order.

:func:`purchase_step` is the sequence the detector (:mod:`shopsentry.detection.hot_path`)
and both offline replays (:mod:`.offline`) run per purchase: the row from the state before
it, then the purchase folded in. Behaviour events only update state
(:func:`~shopsentry.features.observe.observe_behavior`).

A purchase reaches the groups as anything with the :class:`PurchaseFields` attributes:
the :class:`~shopsentry.events.schema.Purchase` model on the hot path, a
:class:`~shopsentry.features.observe.PurchaseRow` read straight from JSON offline.

Missing values are NaN (XGBoost's missing-value handling), never a made-up default:
"no previous purchase" is not "a previous purchase of 0".

Written for speed (a few microseconds per purchase): epoch-second floats, one pass over
each window, no datetime arithmetic and no pydantic copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from shopsentry.events.schema import MERCHANT_CATEGORIES, PAYMENT_METHODS, SOURCES, Purchase
from shopsentry.features.entity import (
    ENTITY_FEATURES,
    ENTITY_KINDS,
    EntityState,
    entity_values,
    observe_entity_purchase,
)
from shopsentry.features.observe import PurchaseFields, observe_purchase_at
from shopsentry.features.state import DAY_S, BehaviorState, PurchaseState

NAN = math.nan

# The states of the purchase's entities, in ENTITY_KINDS order (None: it names none).
Entities = list[EntityState | None]
GroupValues = Callable[[PurchaseState, BehaviorState, Entities, PurchaseFields, float], list[float]]


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """Features that are computed together: their names (with what each means) and the
    function returning their values, in that order, for one purchase."""

    family: str
    features: tuple[tuple[str, str], ...]
    values: GroupValues

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)


PAYMENT_METHOD_CODES: dict[str, float] = {m: float(i) for i, m in enumerate(PAYMENT_METHODS)}
SOURCE_CODES: dict[str, float] = {s: float(i) for i, s in enumerate(SOURCES)}
CATEGORY_CODES: dict[str, float] = {c: float(i) for i, c in enumerate(MERCHANT_CATEGORIES)}
OTHER_CATEGORY = float(len(MERCHANT_CATEGORIES))


# -- amount -------------------------------------------------------------------------------


def _amount(
    p: PurchaseState, b: BehaviorState, e: Entities, v: PurchaseFields, ts: float
) -> list[float]:
    amount = v.amount
    n = p.n
    if n:
        avg = p.total / n
        ratio = amount / avg if avg > 0 else NAN
        vs_max = amount / p.max_amount if p.max_amount > 0 else NAN
    else:
        avg = ratio = vs_max = NAN
    return [amount, avg, ratio, vs_max, float(v.item_count)]


AMOUNT = FeatureGroup(
    "amount",
    (
        ("amount", "purchase amount"),
        ("user_avg_amount", "the user's average purchase before this one"),
        ("amount_ratio", "amount ÷ the user's average purchase"),
        ("amount_vs_max", "amount ÷ the user's largest purchase so far"),
        ("item_count", "items in the cart"),
    ),
    _amount,
)


# -- velocity -----------------------------------------------------------------------------


def _velocity(
    p: PurchaseState, b: BehaviorState, e: Entities, v: PurchaseFields, ts: float
) -> list[float]:
    """Counts and amounts over the purchase windows, one pass from the newest."""
    card, device = v.card_fingerprint, v.device_fingerprint
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
    n = p.n
    if n:
        first = p.first_ts
        frequency = n / max((ts - first) / DAY_S, 1.0) if first is not None else NAN
        since_last = (ts - p.last_ts) / DAY_S if p.last_ts is not None else NAN
    else:
        frequency, since_last = 0.0, NAN
    return [
        frequency,
        since_last,
        float(c10),
        float(c1h),
        float(c24),
        a10,
        a1h,
        a24,
        float(n),
        n_cards24,
        n_devs24,
    ]


VELOCITY = FeatureGroup(
    "velocity",
    (
        ("purchase_frequency", "the user's purchases per day since their first purchase"),
        ("days_since_last_purchase", "days since the user's previous purchase"),
        ("purchases_10m", "the user's purchases in the previous 10 minutes"),
        ("purchases_1h", "the user's purchases in the previous hour"),
        ("purchases_24h", "the user's purchases in the previous 24 hours"),
        ("amount_10m", "amount the user spent in the previous 10 minutes"),
        ("amount_1h", "amount the user spent in the previous hour"),
        ("amount_24h", "amount the user spent in the previous 24 hours"),
        ("purchase_count", "the user's purchases so far"),
        (
            "cards_24h",
            "distinct cards in the user's purchases of the last 24 hours (with this one)",
        ),
        (
            "devices_24h",
            "distinct devices in the user's purchases of the last 24 hours (with this one)",
        ),
    ),
    _velocity,
)


# -- novelty ------------------------------------------------------------------------------


def _novelty(
    p: PurchaseState, b: BehaviorState, e: Entities, v: PurchaseFields, ts: float
) -> list[float]:
    card, device, ip = v.card_fingerprint, v.device_fingerprint, v.ip_fingerprint
    country, shipping = v.country, v.shipping_country
    billing = p.billing
    home: str | None = max(billing, key=billing.__getitem__) if p.n and billing else None
    if device is None:
        new_device = new_pdevice = cards_on_device = NAN
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
        billing_ne_shipping = ship_ne_home = new_ship = NAN
    else:
        billing_ne_shipping = 1.0 if shipping != v.billing_country else 0.0
        ship_ne_home = NAN if home is None else (1.0 if shipping != home else 0.0)
        new_ship = 0.0 if shipping in p.shipping else 1.0
    country_ne_home = NAN if home is None else (1.0 if country != home else 0.0)
    return [
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
    ]


NOVELTY = FeatureGroup(
    "novelty",
    (
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
    ),
    _novelty,
)


# -- behaviour ----------------------------------------------------------------------------


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


def _behaviour(
    p: PurchaseState, b: BehaviorState, e: Entities, v: PurchaseFields, ts: float
) -> list[float]:
    # Written out, not through helpers: this group runs per purchase on the hot path.
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
    shipping = v.shipping_country
    first_p, first_b = p.first_ts, b.first_ts
    if first_p is None:
        age_days = NAN if first_b is None else (ts - first_b) / DAY_S
    else:
        age_days = (ts - (first_p if first_b is None or first_p < first_b else first_b)) / DAY_S
    hour = int(ts // 3600.0) % 24
    return [
        float(f1h),
        float(f24),
        float(logins24),
        (ts - b.pwd_ts) / 60.0 if b.pwd_ts is not None else NAN,
        (ts - b.addr_ts) / 60.0 if b.addr_ts is not None else NAN,
        NAN if shipping is None else (1.0 if b.addr_country == shipping else 0.0),
        (ts - b.newdev_ts) / 60.0 if b.newdev_ts is not None else NAN,
        (ts - b.newctry_ts) / 60.0 if b.newctry_ts is not None else NAN,
        (ts - b.pm_ts) / 60.0 if b.pm_ts is not None else NAN,
        float(browse30),
        float(carts30),
        ts - b.last_ts if b.last_ts is not None else NAN,
        age_days,
        _hour_share(p.hours, p.n, hour),
        _activity_hour_share(b, ts, hour),
    ]


BEHAVIOUR = FeatureGroup(
    "behaviour",
    (
        ("failed_logins_1h", "failed logins in the previous hour"),
        ("failed_logins_24h", "failed logins in the previous 24 hours"),
        ("logins_24h", "logins in the previous 24 hours"),
        ("minutes_since_password_change", "minutes since the password was changed"),
        ("minutes_since_address_change", "minutes since an address was changed"),
        ("ships_to_changed_address", "ships to the country of the last address change"),
        ("minutes_since_new_device_login", "minutes since a login from a device new to the user"),
        (
            "minutes_since_new_country_login",
            "minutes since a login from a country new to the user",
        ),
        ("minutes_since_payment_method_added", "minutes since a payment method was added"),
        ("browse_events_30m", "page views and searches in the previous 30 minutes"),
        ("cart_adds_30m", "add-to-cart events in the previous 30 minutes"),
        ("seconds_since_last_behavior", "seconds since the user's previous behaviour event"),
        ("account_age_days", "days since the user was first seen"),
        (
            "hour_share_purchases",
            "share of the user's purchases within an hour of this hour of day",
        ),
        (
            "hour_share_activity",
            "share of the user's earlier activity within an hour of this hour",
        ),
    ),
    _behaviour,
)


# -- context ------------------------------------------------------------------------------


def _context(
    p: PurchaseState, b: BehaviorState, e: Entities, v: PurchaseFields, ts: float
) -> list[float]:
    category = v.merchant_category
    return [
        float(int(ts // 3600.0) % 24),
        float((int(ts // DAY_S) + 3) % 7),  # 1970-01-01 was a Thursday
        PAYMENT_METHOD_CODES[v.payment_method],
        SOURCE_CODES[v.source],
        NAN if category is None else CATEGORY_CODES.get(category, OTHER_CATEGORY),
    ]


CONTEXT = FeatureGroup(
    "context",
    (
        ("hour_of_day", "hour of the purchase (UTC)"),
        ("day_of_week", "day of the week (Monday = 0, UTC)"),
        ("payment_method", "payment method (its position in the schema's PAYMENT_METHODS)"),
        ("source", "channel (its position in the schema's SOURCES: web, mobile, pos)"),
        (
            "merchant_category",
            "merchant category (position in MERCHANT_CATEGORIES; past it: other)",
        ),
    ),
    _context,
)


# -- entity risk --------------------------------------------------------------------------


def _entity(
    p: PurchaseState, b: BehaviorState, e: Entities, v: PurchaseFields, ts: float
) -> list[float]:
    return entity_values(e, v.user_id, ts)


ENTITY = FeatureGroup("entity", ENTITY_FEATURES, _entity)


# -- the row ------------------------------------------------------------------------------

GROUPS: tuple[FeatureGroup, ...] = (AMOUNT, VELOCITY, NOVELTY, BEHAVIOUR, CONTEXT, ENTITY)

FEATURES: tuple[tuple[str, str], ...] = tuple(f for group in GROUPS for f in group.features)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
FEATURE_DESCRIPTIONS: dict[str, str] = dict(FEATURES)
FEATURE_FAMILIES: dict[str, str] = {n: g.family for g in GROUPS for n in g.names}


def _slices() -> dict[str, slice]:
    out, start = {}, 0
    for group in GROUPS:
        out[group.family] = slice(start, start + len(group.features))
        start += len(group.features)
    return out


GROUP_SLICES: dict[str, slice] = _slices()  # family → its columns in the row
# The groups' functions in row order, bound once (one call each per purchase, no loop).
_GROUP_1, _GROUP_2, _GROUP_3, _GROUP_4, _GROUP_5, _GROUP_6 = (group.values for group in GROUPS)
NO_ENTITIES: Entities = [None] * len(ENTITY_KINDS)


def vector_at(
    pstate: PurchaseState,
    bstate: BehaviorState,
    entities: Entities,
    purchase: PurchaseFields,
    ts: float,
) -> list[float]:
    """The row of ``purchase`` at ``ts`` (epoch seconds) from the states before it: the
    groups' slices in :data:`GROUPS` order."""
    p, b, e, v = pstate, bstate, entities, purchase
    return [
        *_GROUP_1(p, b, e, v, ts),
        *_GROUP_2(p, b, e, v, ts),
        *_GROUP_3(p, b, e, v, ts),
        *_GROUP_4(p, b, e, v, ts),
        *_GROUP_5(p, b, e, v, ts),
        *_GROUP_6(p, b, e, v, ts),
    ]


def feature_vector(
    pstate: PurchaseState,
    bstate: BehaviorState,
    purchase: Purchase,
    entities: Entities | None = None,
) -> list[float]:
    """The features of ``purchase`` from the states before it (NaN = missing; without
    ``entities`` its entity features are missing)."""
    return vector_at(
        pstate, bstate, entities or NO_ENTITIES, purchase, purchase.occurred_at.timestamp()
    )


def purchase_step(
    pstate: PurchaseState,
    bstate: BehaviorState,
    entities: Entities,
    purchase: PurchaseFields,
    ts: float,
) -> list[float]:
    """The one feature step: the row from the states before ``purchase``, then the
    purchase folded into the user's purchase state and its entities' states. Every
    driver (the detector, both offline replays) calls this, so serving and training run
    the same sequence."""
    row = vector_at(pstate, bstate, entities, purchase, ts)
    observe_purchase_at(pstate, purchase, ts)
    user, amount = purchase.user_id, purchase.amount
    for state in entities:
        if state is not None:
            observe_entity_purchase(state, user, amount, ts)
    return row
