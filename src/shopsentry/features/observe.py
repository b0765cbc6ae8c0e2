"""How events update the per-user state (after a purchase's row was read from it).

The functions read events through small protocols (:class:`PurchaseFields`,
:class:`BehaviorFields`) that the schema's models satisfy, and so do :class:`PurchaseRow`
and :class:`BehaviorRow`, which the offline table replay fills straight from the encoded
JSON (several times cheaper than validating a model per event). One definition, two ways
in: the detector and the training set cannot fold an event in differently.
"""

from __future__ import annotations

from typing import Any, Protocol

from shopsentry.events.schema import Purchase
from shopsentry.features.state import (
    BROWSE_WINDOW_S,
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


class PurchaseFields(Protocol):
    """What the features read of a purchase (the :class:`Purchase` model has them all)."""

    @property
    def user_id(self) -> str: ...
    @property
    def amount(self) -> float: ...
    @property
    def item_count(self) -> int: ...
    @property
    def payment_method(self) -> str: ...
    @property
    def card_fingerprint(self) -> str | None: ...
    @property
    def device_fingerprint(self) -> str | None: ...
    @property
    def ip_fingerprint(self) -> str | None: ...
    @property
    def country(self) -> str: ...
    @property
    def billing_country(self) -> str: ...
    @property
    def shipping_country(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def merchant_category(self) -> str | None: ...
    @property
    def terminal_id(self) -> str | None: ...
    @property
    def shipping_address_hash(self) -> str | None: ...


class BehaviorFields(Protocol):
    """What the behaviour state reads of a behaviour event."""

    @property
    def event_type(self) -> str: ...
    @property
    def device_fingerprint(self) -> str | None: ...
    @property
    def ip_fingerprint(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...


class PurchaseRow:
    """A purchase's feature inputs read from its encoded JSON (already validated)."""

    __slots__ = (
        "amount",
        "billing_country",
        "card_fingerprint",
        "country",
        "device_fingerprint",
        "ip_fingerprint",
        "item_count",
        "merchant_category",
        "payment_method",
        "shipping_address_hash",
        "shipping_country",
        "source",
        "terminal_id",
        "user_id",
    )

    def __init__(self, d: dict[str, Any]) -> None:
        get = d.get
        self.terminal_id: str | None = get("terminal_id")
        self.shipping_address_hash: str | None = get("shipping_address_hash")
        self.user_id: str = d["user_id"]
        self.amount = float(d["amount"])
        self.item_count: int = d["item_count"]
        self.payment_method: str = d["payment_method"]
        self.card_fingerprint: str | None = get("card_fingerprint")
        self.device_fingerprint: str | None = get("device_fingerprint")
        self.ip_fingerprint: str | None = get("ip_fingerprint")
        self.country: str = d["country"]
        self.billing_country: str = d["billing_country"]
        self.shipping_country: str | None = get("shipping_country")
        self.source: str = d["source"]
        self.merchant_category: str | None = get("merchant_category")


class BehaviorRow:
    """A behaviour event's state inputs read from its encoded JSON."""

    __slots__ = (
        "card_fingerprint",
        "country",
        "device_fingerprint",
        "event_type",
        "ip_fingerprint",
        "new_country",
    )

    def __init__(self, d: dict[str, Any]) -> None:
        get = d.get
        self.event_type: str = d["event_type"]
        self.device_fingerprint: str | None = get("device_fingerprint")
        self.ip_fingerprint: str | None = get("ip_fingerprint")
        self.country: str | None = get("country")
        self.new_country: str | None = get("new_country")
        self.card_fingerprint: str | None = get("card_fingerprint")


def observe_purchase(pstate: PurchaseState, purchase: Purchase) -> None:
    """Fold ``purchase`` into the purchase-side state (after its features were read)."""
    observe_purchase_at(pstate, purchase, purchase.occurred_at.timestamp())


def observe_purchase_at(pstate: PurchaseState, purchase: PurchaseFields, ts: float) -> None:
    """:func:`observe_purchase` with the time given in epoch seconds."""
    p = pstate
    amount = purchase.amount
    card, device = purchase.card_fingerprint, purchase.device_fingerprint
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
            _remember_card_on_device(p.dev_cards, device, card)
    if card is not None:
        remember(p.cards, card, ts, MAX_SEEN)
    ip = purchase.ip_fingerprint
    if ip is not None:
        remember(p.ips, ip, ts, MAX_SEEN)
    count(p.countries, purchase.country, MAX_COUNTRIES)
    count(p.billing, purchase.billing_country, MAX_COUNTRIES)
    shipping = purchase.shipping_country
    if shipping is not None:
        count(p.shipping, shipping, MAX_COUNTRIES)
    p.hours[int(ts // 3600.0) % 24] += 1


def _remember_card_on_device(dev_cards: dict[str, list[str]], device: str, card: str) -> None:
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


def observe_behavior(bstate: BehaviorState, event: Any) -> None:
    """Fold one behaviour event (page view, search, add-to-cart, login, failed login,
    password change, address change, payment method added) into the behaviour state."""
    observe_behavior_at(bstate, event, event.occurred_at.timestamp())


def observe_behavior_at(bstate: BehaviorState, event: Any, ts: float) -> None:
    """:func:`observe_behavior` with the time given in epoch seconds; ``event`` is a
    behaviour model or a :class:`BehaviorRow`."""
    b = bstate
    kind = event.event_type
    device, ip, country = event.device_fingerprint, event.ip_fingerprint, event.country
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
        b.addr_country = event.new_country
    elif kind == "payment_method_added":
        b.pm_ts = ts
        card = event.card_fingerprint
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
