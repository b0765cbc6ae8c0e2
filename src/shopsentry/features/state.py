"""Per-user feature state, split in two halves by the topic that updates it.

Purchases (3 partitions) and behaviour events (2 partitions) of one user can be owned by
two different detector workers, so each half is written by one side only:
:class:`PurchaseState` from purchases, :class:`BehaviorState` from behaviour events. The
scorer reads both.

Both are bounded: sliding windows keep 24 hours and at most a fixed number of entries;
"seen before" sets keep the most recent few fingerprints. Time is epoch seconds as a
float (no datetime arithmetic on the hot path). Serialisation is orjson over plain lists
and dicts: compact, a microsecond or two each way, and exact (floats round-trip, dict
order is kept, so eviction ties break the same way after a reload).
"""

from __future__ import annotations

from typing import Any

import orjson

from shopsentry.errors import TerminalError

DAY_S = 86_400.0
WINDOW_S = DAY_S  # longest sliding window kept
MAX_RECENT = 64  # purchases kept in the 24 h window
MAX_SEEN = 16  # devices / cards / IPs remembered per user
MAX_COUNTRIES = 8
MAX_CARDS_PER_DEVICE = 8
MAX_DEVICES_WITH_CARDS = 8
MAX_EVENTS = 64  # behaviour timestamps kept per list
BROWSE_WINDOW_S = 3600.0
_VERSION = 1


class StateDecodeError(TerminalError):
    """Stored state bytes are not a state this version can read."""


def remember(seen: dict[str, float], key: str, ts: float, cap: int) -> None:
    """Record ``key`` as seen at ``ts``; forget the least recently seen beyond ``cap``."""
    seen.pop(key, None)  # re-inserted below, at the end: dict order is recency order
    seen[key] = ts
    if len(seen) > cap:
        del seen[next(iter(seen))]


def count(counts: dict[str, int], key: str, cap: int) -> None:
    """Count ``key``; beyond ``cap`` keys, drop the rarest (oldest on ties)."""
    counts[key] = counts.get(key, 0) + 1
    if len(counts) > cap:
        rarest = min(counts, key=counts.__getitem__)
        if rarest == key:  # never drop what was just seen: drop the next rarest
            rarest = min((k for k in counts if k != key), key=counts.__getitem__)
        del counts[rarest]


def append_window(times: list[float], ts: float, window: float, cap: int) -> None:
    """Append ``ts`` and drop entries older than ``window`` or beyond ``cap``."""
    times.append(ts)
    horizon = ts - window
    drop = 0
    n = len(times)
    while drop < n and times[drop] <= horizon:
        drop += 1
    if n - drop > cap:
        drop = n - cap
    if drop:
        del times[:drop]


class PurchaseState:
    """What a user's past purchases say (updated from purchase events only)."""

    __slots__ = (
        "billing",
        "cards",
        "countries",
        "dev_cards",
        "devices",
        "first_ts",
        "hours",
        "ips",
        "last_ts",
        "max_amount",
        "n",
        "ramt",
        "rcard",
        "rdev",
        "rts",
        "shipping",
        "total",
    )

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.max_amount = 0.0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        # 24 h window of purchases, oldest first (parallel lists: cheap to scan and dump)
        self.rts: list[float] = []
        self.ramt: list[float] = []
        self.rcard: list[str | None] = []
        self.rdev: list[str | None] = []
        self.devices: dict[str, float] = {}
        self.cards: dict[str, float] = {}
        self.ips: dict[str, float] = {}
        self.countries: dict[str, int] = {}
        self.billing: dict[str, int] = {}
        self.shipping: dict[str, int] = {}
        self.hours: list[int] = [0] * 24
        self.dev_cards: dict[str, list[str]] = {}

    @classmethod
    def empty(cls) -> PurchaseState:
        return cls()

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            [
                _VERSION,
                self.n,
                self.total,
                self.max_amount,
                self.first_ts,
                self.last_ts,
                self.rts,
                self.ramt,
                self.rcard,
                self.rdev,
                self.devices,
                self.cards,
                self.ips,
                self.countries,
                self.billing,
                self.shipping,
                self.hours,
                self.dev_cards,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> PurchaseState:
        state = cls()
        if not data:
            return state
        v = _load(data, 18, "purchase")
        (
            _,
            state.n,
            state.total,
            state.max_amount,
            state.first_ts,
            state.last_ts,
            state.rts,
            state.ramt,
            state.rcard,
            state.rdev,
            state.devices,
            state.cards,
            state.ips,
            state.countries,
            state.billing,
            state.shipping,
            state.hours,
            state.dev_cards,
        ) = v
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PurchaseState) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PurchaseState(n={self.n}, total={self.total:.2f}, recent={len(self.rts)})"


class BehaviorState:
    """What a user's behaviour says (updated from behaviour events only)."""

    __slots__ = (
        "addr_country",
        "addr_ts",
        "browse",
        "carts",
        "countries",
        "devices",
        "failed",
        "first_ts",
        "hours",
        "ips",
        "last_ts",
        "logins",
        "n",
        "newctry_ts",
        "newdev_ts",
        "pm_cards",
        "pm_ts",
        "pwd_ts",
    )

    def __init__(self) -> None:
        self.n = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.devices: dict[str, float] = {}
        self.ips: dict[str, float] = {}
        self.countries: dict[str, int] = {}
        self.failed: list[float] = []  # failed logins, 24 h
        self.logins: list[float] = []  # logins, 24 h
        self.browse: list[float] = []  # page views and searches, 1 h
        self.carts: list[float] = []  # add-to-cart, 1 h
        self.pwd_ts: float | None = None
        self.addr_ts: float | None = None
        self.addr_country: str | None = None
        self.pm_ts: float | None = None
        self.pm_cards: dict[str, float] = {}
        self.newdev_ts: float | None = None  # last login from a device never seen before
        self.newctry_ts: float | None = None  # last login from a country never seen before
        self.hours: list[int] = [0] * 24

    @classmethod
    def empty(cls) -> BehaviorState:
        return cls()

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            [
                _VERSION,
                self.n,
                self.first_ts,
                self.last_ts,
                self.devices,
                self.ips,
                self.countries,
                self.failed,
                self.logins,
                self.browse,
                self.carts,
                self.pwd_ts,
                self.addr_ts,
                self.addr_country,
                self.pm_ts,
                self.pm_cards,
                self.newdev_ts,
                self.newctry_ts,
                self.hours,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> BehaviorState:
        state = cls()
        if not data:
            return state
        v = _load(data, 19, "behavior")
        (
            _,
            state.n,
            state.first_ts,
            state.last_ts,
            state.devices,
            state.ips,
            state.countries,
            state.failed,
            state.logins,
            state.browse,
            state.carts,
            state.pwd_ts,
            state.addr_ts,
            state.addr_country,
            state.pm_ts,
            state.pm_cards,
            state.newdev_ts,
            state.newctry_ts,
            state.hours,
        ) = v
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BehaviorState) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BehaviorState(n={self.n}, devices={len(self.devices)})"


def _load(data: bytes, fields: int, kind: str) -> list[Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StateDecodeError(
            f"{kind} state is not valid: {exc}", hint="clear the state store and replay"
        ) from None
    if not isinstance(value, list) or len(value) != fields or value[0] != _VERSION:
        raise StateDecodeError(
            f"{kind} state has an unknown layout",
            hint="clear the state store and replay the log",
        )
    return value
