"""Entity features: risk that travels between customers, through the card, device, IP,
POS terminal and shipping address a purchase passes through.

One definition, online and offline (like the per-user features): :class:`EntityState` is
what one entity's past says, :func:`entity_values` reads a purchase's entity features
from the states *before* it, :func:`observe_entity_purchase` folds a purchase in and
:func:`observe_entity_label` a label. The detector keeps the states in a shared store
(:mod:`.entity_store`, one atomic update per purchase, idempotent on ``event_id``); the
offline replay keeps them in memory and applies labels at their ``known_at``.

Per entity (see ``docs/features.md`` for why these entities and these windows):

- purchases and amount over 1 / 7 / 30 days (hour buckets for the day, UTC day buckets
  for 7 and 30: "7 d" is today and the six days before);
- distinct users over 1 h / 24 h / 7 d (a device or IP shared by many accounts is a ring;
  the most recent :data:`MAX_USERS` users are kept, so a count saturates there);
- fraud share over 1 / 7 / 30 days: the entity's purchases in the window that were
  confirmed fraud *by a label known at the time of reading* (``known_at <= ts``), over
  its purchases in the window; and days since its last known fraud.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from shopsentry.errors import TerminalError
from shopsentry.features.state import DAY_S, remember

NAN = math.nan
HOUR_S = 3600.0
_WEEK_S = 7 * DAY_S
MAX_USERS = 32  # most recent users remembered per entity
MAX_FRAUDS = 64  # most recent known frauds remembered per entity
_VERSION = 1

# (kind, the purchase attribute naming it, why it matters) — the entities with features.
ENTITIES: tuple[tuple[str, str, str], ...] = (
    ("card", "card_fingerprint", "a stolen card used across accounts; card testing"),
    ("device", "device_fingerprint", "a fraud ring's few devices across many accounts"),
    ("ip", "ip_fingerprint", "a ring's or a bot's IPs"),
    ("terminal", "terminal_id", "a tampered POS terminal: ordinary amounts, weeks of fraud"),
    ("address", "shipping_address_hash", "a drop-shipping address collecting many accounts"),
)
ENTITY_KINDS: tuple[str, ...] = tuple(kind for kind, _, _ in ENTITIES)
_ATTRS: tuple[str, ...] = tuple(attr for _, attr, _ in ENTITIES)
_KIND_ATTRS: tuple[tuple[str, str], ...] = tuple(zip(ENTITY_KINDS, _ATTRS, strict=True))

_PER_ENTITY: tuple[tuple[str, str], ...] = (
    ("purchases_1d", "purchases through this {e} in the current and previous 23 hours"),
    ("purchases_7d", "purchases through this {e} today and the previous 6 days (UTC)"),
    ("purchases_30d", "purchases through this {e} today and the previous 29 days (UTC)"),
    ("amount_1d", "amount through this {e} in the current and previous 23 hours"),
    ("amount_7d", "amount through this {e} today and the previous 6 days"),
    ("amount_30d", "amount through this {e} today and the previous 29 days"),
    ("users_1h", "distinct users of this {e} in the last hour (with this one)"),
    ("users_24h", "distinct users of this {e} in the last 24 hours (with this one)"),
    ("users_7d", "distinct users of this {e} in the last 7 days (with this one)"),
    ("fraud_share_1d", "share of this {e}'s purchases of the last day known to be fraud"),
    ("fraud_share_7d", "share of this {e}'s purchases of the last 7 days known to be fraud"),
    ("fraud_share_30d", "share of this {e}'s purchases of the last 30 days known to be fraud"),
    ("days_since_fraud", "days since this {e}'s latest purchase known to be fraud"),
)
ENTITY_FEATURES: tuple[tuple[str, str], ...] = tuple(
    (f"{kind}_{name}", text.format(e=kind)) for kind in ENTITY_KINDS for name, text in _PER_ENTITY
)
_MISSING: list[float] = [NAN] * len(_PER_ENTITY)


class EntityStateDecodeError(TerminalError):
    """Stored entity state bytes are not a state this version can read."""


def entity_keys(purchase: Any) -> list[str | None]:
    """The store key of each entity of ``purchase`` (None: the purchase names none)."""
    return [
        None if (value := getattr(purchase, attr, None)) is None else f"{kind}:{value}"
        for kind, attr in _KIND_ATTRS
    ]


class EntityState:
    """One entity's recent purchases (bucketed), users and known frauds."""

    __slots__ = ("days", "frauds", "hours", "users")

    def __init__(self) -> None:
        # [bucket index, purchases, amount], oldest first: the last 24 hours / 30 days
        self.hours: list[list[float]] = []
        self.days: list[list[float]] = []
        self.users: dict[str, float] = {}  # user → last purchase time, recency order
        # purchase event id → [purchase time, known_at], for confirmed frauds
        self.frauds: dict[str, list[float]] = {}

    def to_bytes(self) -> bytes:
        return orjson.dumps([_VERSION, self.hours, self.days, self.users, self.frauds])

    @classmethod
    def from_bytes(cls, data: bytes | None) -> EntityState:
        state = cls()
        if not data:
            return state
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise EntityStateDecodeError(
                f"entity state is not valid: {exc}", hint="clear the entity store and replay"
            ) from None
        if not isinstance(value, list) or len(value) != 5 or value[0] != _VERSION:
            raise EntityStateDecodeError(
                "entity state has an unknown layout", hint="clear the entity store and replay"
            )
        _, state.hours, state.days, state.users, state.frauds = value
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityState) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


def _add(buckets: list[list[float]], index: int, amount: float, keep: int) -> None:
    if buckets:
        last = buckets[-1]
        if last[0] == index:  # the common case: the current hour / day
            last[1] += 1
            last[2] += amount
            return
        if last[0] > index:  # an older purchase applied late (another worker's batch)
            for bucket in buckets:
                if bucket[0] == index:
                    bucket[1] += 1
                    bucket[2] += amount
                    return
            buckets.append([index, 1, amount])
            buckets.sort(key=lambda b: b[0])
        else:
            buckets.append([index, 1, amount])
    else:
        buckets.append([index, 1, amount])
    horizon = buckets[-1][0] - keep
    while buckets[0][0] <= horizon:
        del buckets[0]


def observe_entity_purchase(state: EntityState, user: str, amount: float, ts: float) -> None:
    """Fold one purchase through this entity into its state."""
    _add(state.hours, int(ts // HOUR_S), amount, 24)
    _add(state.days, int(ts // DAY_S), amount, 30)
    users = state.users
    seen = users.get(user)
    if seen is not None and seen > ts:
        return  # this user is already known from a later purchase
    if not users or ts >= users[next(reversed(users))]:
        remember(users, user, ts, MAX_USERS)  # in time order: the common case
        return
    # Applied late (another worker's batch, a backlog drained by several workers): keep
    # the users in time order, so the state is the same whatever order deltas came in.
    users[user] = ts
    ordered = sorted(users.items(), key=lambda item: item[1])[-MAX_USERS:]
    users.clear()
    users.update(ordered)


def observe_entity_label(
    state: EntityState, event_id: str, is_fraud: bool, purchase_ts: float, known_at: float
) -> None:
    """Record (or withdraw, for a legitimate verdict) a label of one of its purchases.
    Idempotent: a label applied twice changes nothing."""
    frauds = state.frauds
    if not is_fraud:
        frauds.pop(event_id, None)
        return
    if event_id in frauds:
        return
    frauds[event_id] = [purchase_ts, known_at]
    if len(frauds) > MAX_FRAUDS:  # forget the earliest known (whatever order labels came in)
        del frauds[min(frauds, key=lambda key: frauds[key][1])]


def _values(state: EntityState, user: str, ts: float) -> list[float]:
    hour, day = int(ts // HOUR_S), int(ts // DAY_S)
    n1 = a1 = 0.0
    since = hour - 23
    for index, n, amount in reversed(state.hours):
        if index < since:
            break
        if index > hour:
            continue  # after this purchase (a worker ahead in a backlog): not yet
        n1 += n
        a1 += amount
    n7 = a7 = n30 = a30 = 0.0
    since7, since30 = day - 6, day - 29
    for index, n, amount in reversed(state.days):
        if index < since30:
            break
        if index > day:
            continue
        n30 += n
        a30 += amount
        if index >= since7:
            n7 += n
            a7 += amount
    u1 = u24 = u7 = 1.0  # this purchase's user
    for other, seen in reversed(state.users.items()):  # most recent first
        age = ts - seen
        if age >= _WEEK_S:
            break
        if age < 0 or other == user:
            continue
        u7 += 1
        if age < DAY_S:
            u24 += 1
            if age < HOUR_S:
                u1 += 1
    frauds = state.frauds
    if not frauds:  # the common case: no known fraud, so every share is 0 (0 / n)
        return [
            n1, n7, n30, a1, a7, a30, u1, u24, u7,
            0.0 if n1 else NAN, 0.0 if n7 else NAN, 0.0 if n30 else NAN, NAN,
        ]  # fmt: skip
    f1 = f7 = f30 = 0.0
    latest = -math.inf
    for purchase_ts, known_at in frauds.values():
        if known_at > ts:
            continue  # not known yet when this purchase is decided
        if purchase_ts > latest:
            latest = purchase_ts
        d = int(purchase_ts // DAY_S)
        if d >= since30:
            f30 += 1
            if d >= since7:
                f7 += 1
                if int(purchase_ts // HOUR_S) >= since:
                    f1 += 1
    return [
        n1, n7, n30, a1, a7, a30, u1, u24, u7,
        min(f1 / n1, 1.0) if n1 else NAN,
        min(f7 / n7, 1.0) if n7 else NAN,
        min(f30 / n30, 1.0) if n30 else NAN,
        (ts - latest) / DAY_S if latest > -math.inf else NAN,
    ]  # fmt: skip


def entity_values(states: list[EntityState | None], user: str, ts: float) -> list[float]:
    """The entity features of a purchase by ``user`` at ``ts`` from the states of its
    entities (in :data:`ENTITY_KINDS` order; None: the purchase names no such entity,
    and its features are missing)."""
    row: list[float] = []
    for state in states:
        row += _MISSING if state is None else _values(state, user, ts)
    return row
