"""What a simulation run looks like, and the fixed vocabularies it draws from.

Everything here is plain data so a run is reproducible from its config alone: the same
:class:`SimulatorConfig` (seed included) gives the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shopsentry.errors import ConfigError
from shopsentry.events.schema import MERCHANT_CATEGORIES
from shopsentry.events.schema import PAYMENT_METHODS as PAYMENT_METHODS  # re-exported

if TYPE_CHECKING:
    from shopsentry.simulator.drift import DriftSpec

# Countries: code, UTC offset in hours (for users' active hours), weight as a home country.
COUNTRIES: tuple[tuple[str, int, float], ...] = (
    ("US", -5, 30.0),
    ("GB", 0, 10.0),
    ("DE", 1, 8.0),
    ("FR", 1, 7.0),
    ("CA", -5, 5.0),
    ("ES", 1, 4.0),
    ("IT", 1, 4.0),
    ("NL", 1, 3.0),
    ("AU", 10, 3.0),
    ("JP", 9, 3.0),
    ("BR", -3, 3.0),
    ("MX", -6, 3.0),
    ("IN", 5, 3.0),
    ("PL", 1, 2.0),
    ("SE", 1, 2.0),
    ("IE", 0, 2.0),
    ("SG", 8, 1.5),
    ("ZA", 2, 1.5),
    ("NG", 1, 0.5),
    ("RO", 2, 1.0),
    ("UA", 2, 1.0),
    ("VN", 7, 1.0),
    ("ID", 7, 1.0),
    ("TR", 3, 1.0),
)
COUNTRY_CODES: tuple[str, ...] = tuple(c for c, _, _ in COUNTRIES)
COUNTRY_TZ: tuple[int, ...] = tuple(tz for _, tz, _ in COUNTRIES)
# Where fraudsters' traffic tends to come from (indexes into COUNTRIES), and how likely.
FRAUD_ORIGINS: tuple[tuple[str, float], ...] = (
    ("NG", 3.0),
    ("RO", 3.0),
    ("UA", 2.0),
    ("VN", 2.0),
    ("ID", 2.0),
    ("BR", 2.0),
    ("TR", 2.0),
    ("US", 2.0),
    ("GB", 1.0),
    ("NL", 1.0),
    ("DE", 1.0),
    ("IN", 1.0),
)

SOURCES: tuple[str, ...] = ("web", "mobile", "pos")
EVENT_TYPES: tuple[str, ...] = (
    "purchase",
    "page_view",
    "search",
    "add_to_cart",
    "login",
    "failed_login",
    "password_change",
    "address_change",
    "payment_method_added",
)
(
    PURCHASE,
    PAGE_VIEW,
    SEARCH,
    ADD_TO_CART,
    LOGIN,
    FAILED_LOGIN,
    PASSWORD_CHANGE,
    ADDRESS_CHANGE,
    PM_ADDED,
) = range(9)

CARD, PAYPAL, APPLE_PAY, GOOGLE_PAY, BANK_TRANSFER, GIFT_CARD, CASH = range(7)
# Methods that carry a card fingerprint (wallets tokenise a card, the fingerprint is the card's).
CARD_BACKED = frozenset({CARD, APPLE_PAY, GOOGLE_PAY})

# Indices into the schema's vocabularies (MERCHANT_CATEGORIES, PAYMENT_METHODS).
CATEGORIES = MERCHANT_CATEGORIES
CATEGORY_WEIGHTS: tuple[float, ...] = (18, 14, 16, 9, 8, 8, 6, 10, 3, 5, 3)
RISKY_CATEGORIES: tuple[int, ...] = (7, 8, 9, 10)  # electronics, gift cards, digital, jewelry
POS_CATEGORIES: tuple[int, ...] = (0, 1, 2, 3, 4)

PAGES: tuple[str, ...] = (
    "/",
    "/deals",
    "/cart",
    "/account",
    "/c/{cat}",
    "/p/{n}",
    "/p/{n}",
    "/p/{n}",
    "/search",
)
QUERIES: tuple[str, ...] = (
    "running shoes",
    "usb-c cable",
    "gift for mum",
    "coffee beans",
    "wireless headphones",
    "lego",
    "winter jacket",
    "phone case",
    "yoga mat",
    "novel",
    "perfume",
    "air fryer",
    "4k monitor",
    "kids bike",
    "backpack",
    "sunglasses",
    "board game",
    "protein powder",
    "desk lamp",
    "watch",
)
FAILED_REASONS: tuple[str, ...] = ("bad_password", "unknown_device", "locked", "mfa_failed")

# Labelled fraud scenarios; the "_quiet", "_ordinary" and "_subtle" ones are hard variants
# that look ordinary.
FRAUD_SCENARIOS: tuple[str, ...] = (
    "card_testing",
    "card_testing_subtle",
    "account_takeover",
    "account_takeover_quiet",
    "stolen_card",
    "stolen_card_ordinary",
    "velocity_burst",
    "velocity_burst_subtle",
    "unusual_hours",
    "unusual_hours_subtle",
    "card_present",
    "card_present_cloned",
    # Entity-only: nothing in the customer's own history gives these away, only what
    # the purchase passes through (a terminal, devices / IPs / drop addresses, cards
    # shared across accounts). See simulator/rings.py.
    "compromised_terminal",
    "fraud_ring",
    "card_testing_ring",
)
# Legitimate behaviour that looks suspicious (the tag rides on legit labels, if requested).
LEGIT_CASES: tuple[str, ...] = (
    "travel",
    "new_phone",
    "big_ticket",
    "gift_abroad",
    "night_owl",
    "new_card",
    "split_order",
    # Entities shared by honest customers (the entity-only scenarios' hard negatives).
    "shared_tablet",
    "busy_terminal",
    "campus_ip",
    "reshipper",
)
TAG_OF: dict[str, int] = {name: i for i, name in enumerate(FRAUD_SCENARIOS + LEGIT_CASES)}
TAG_NAMES: tuple[str, ...] = FRAUD_SCENARIOS + LEGIT_CASES

US = 1_000_000  # microseconds per second: the simulator keeps time as integer microseconds.
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """One run: who (``users``), when (``start`` + ``duration_s``), how much
    (``events_per_hour``; None = each user's natural activity, the history mode) and how
    much fraud (``fraud_share`` of purchases)."""

    users: int = 2_000
    start: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    duration_s: float = 3600.0
    events_per_hour: float | None = 1000.0
    fraud_share: float = 0.015
    seed: int = 0
    legit_labels: bool = False
    # Average web/mobile sessions per user per day in history mode (no fixed rate).
    sessions_per_user_day: float = 0.5
    # Purchases drift from a given time on (simulator/drift.py); None: no drift.
    drift: DriftSpec | None = None

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ConfigError(
                f"users must be at least 1, got {self.users}", hint="pass --users 1000"
            )
        if self.duration_s <= 0:
            raise ConfigError(
                f"duration must be positive, got {self.duration_s}s", hint="pass --duration 1h"
            )
        if self.events_per_hour is not None and self.events_per_hour <= 0:
            raise ConfigError("rate must be positive", hint="pass --rate 1000/h")
        if not 0.0 <= self.fraud_share < 0.5:
            raise ConfigError(
                f"fraud share must be in [0, 0.5), got {self.fraud_share}",
                hint="pass --fraud-share 0.015",
            )
        if self.start.tzinfo is None:
            raise ConfigError(
                "start must carry a timezone", hint="write it like 2026-01-01T00:00:00Z"
            )

    @property
    def start_us(self) -> int:
        return round(self.start.timestamp() * US)

    @property
    def end_us(self) -> int:
        return self.start_us + round(self.duration_s * US)

    @property
    def run_tag(self) -> str:
        """Eight hex digits naming this run in event and order ids, so two different runs
        into one log never collide while the same run always gives the same ids."""
        text = repr(
            (
                self.seed,
                self.start_us,
                self.duration_s,
                self.events_per_hour,
                self.users,
                self.fraud_share,
                self.sessions_per_user_day,
                *((self.drift,) if self.drift is not None else ()),
            )
        )
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()

    @property
    def population_tag(self) -> str:
        """User ids depend on the seed only: runs with one seed share one population."""
        return hashlib.blake2b(f"pop:{self.seed}".encode(), digest_size=2).hexdigest()
