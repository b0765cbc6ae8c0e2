"""One schema per event type: validation, JSON (de)serialisation and JSON Schema.

Every event carries ``event_id``, ``source`` (web | mobile | pos), ``user_id``,
``occurred_at`` (UTC) and ``schema_version``. Purchases travel on ``purchase-events``,
the behaviour events on ``user-behavior``, decisions on ``decisions``, alerts on
``fraud-alerts``, and labels (the ground truth, out of band) on ``fraud-labels``: the
detector reads labels only into its entity fraud features, each from its ``known_at``
on (docs/features.md), never into a decision about the labelled purchase itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
    field_validator,
)
from pydantic_core import CoreSchema, core_schema

SCHEMA_VERSION: Literal[1] = 1
# The times an event may carry: older is a broken clock or a unit mistake (epoch 0),
# later no accelerated simulator reaches.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)

# The vocabularies, defined here once: features encode them by position, the simulator
# draws from them, the warehouse groups by them.
Source = Literal["web", "mobile", "pos"]
SOURCES: tuple[str, ...] = get_args(Source)
PaymentMethod = Literal[
    "card", "paypal", "apple_pay", "google_pay", "bank_transfer", "gift_card", "cash"
]
PAYMENT_METHODS: tuple[str, ...] = get_args(PaymentMethod)
# Merchant categories the product knows. ``Purchase.merchant_category`` stays free text (a
# merchant may send a category this list lacks); features encode an unknown one as "other".
MERCHANT_CATEGORIES: tuple[str, ...] = (
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
Band = Literal["approve", "review", "decline"]
ServedBy = Literal["champion", "challenger"]
Severity = Literal["medium", "high", "critical"]
Verdict = Literal["confirmed_fraud", "false_positive"]


class _EventTimeSchema:
    """An event's time: aware, within range, and in JSON an ISO 8601 text only (strict:
    ``0`` or ``true`` is not read as epoch seconds). Python callers may still pass text.
    All of it is checked inside pydantic-core, so the detector's decode pays nothing."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        def aware(*, strict: bool) -> CoreSchema:
            return core_schema.datetime_schema(
                tz_constraint="aware", ge=EARLIEST_EVENT_TIME, lt=LATEST_EVENT_TIME, strict=strict
            )

        return core_schema.json_or_python_schema(
            json_schema=aware(strict=True), python_schema=aware(strict=False)
        )


EventTime = Annotated[datetime, _EventTimeSchema]

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# "alert-" + an event id: room for the longest event id.
AlertId = Annotated[str, Field(min_length=1, max_length=70, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Fingerprint = Annotated[str, Field(min_length=1, max_length=128)]
Country = Annotated[str, Field(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")]
Currency = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]


def _event_type_required(schema: dict[str, Any]) -> None:
    """``event_type`` has a default in Python but picks the model when decoding, so a
    producer must always send it: the exported JSON Schema says so."""
    if "event_type" in schema.get("properties", {}):
        required = schema.setdefault("required", [])
        if "event_type" not in required:
            required.insert(0, "event_type")


class _Event(BaseModel):
    """Fields every event has. Unknown fields are refused, so typos surface at once."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        json_schema_extra=_event_type_required,
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Id
    source: Source
    user_id: Id
    occurred_at: EventTime

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class Purchase(_Event):
    """A completed checkout: the event the detector scores."""

    event_type: Literal["purchase"] = "purchase"
    order_id: Id
    # Strict: a JSON string or boolean is never a number.
    amount: float = Field(gt=0, le=1_000_000, allow_inf_nan=False, strict=True)
    currency: Currency = "USD"
    item_count: int = Field(ge=1, le=1000, strict=True)
    payment_method: PaymentMethod
    card_fingerprint: Fingerprint | None = None
    device_fingerprint: Fingerprint | None = None
    ip_fingerprint: Fingerprint | None = None
    country: Country
    billing_country: Country
    shipping_country: Country | None = None
    merchant_category: Annotated[str, Field(max_length=32)] | None = None
    # Entities the purchase passes through besides card, device and IP (all optional, so
    # events written before they existed still decode): the store and terminal of a POS
    # purchase, and a fingerprint of the shipping address of a web or mobile one.
    store_id: Id | None = None
    terminal_id: Id | None = None
    shipping_address_hash: Fingerprint | None = None


class _Behavior(_Event):
    device_fingerprint: Fingerprint | None = None
    ip_fingerprint: Fingerprint | None = None
    country: Country | None = None


class PageView(_Behavior):
    event_type: Literal["page_view"] = "page_view"
    page: Annotated[str, Field(max_length=512)]


class Search(_Behavior):
    event_type: Literal["search"] = "search"
    query: Annotated[str, Field(max_length=512)]


class AddToCart(_Behavior):
    event_type: Literal["add_to_cart"] = "add_to_cart"
    product_id: Id
    quantity: int = Field(ge=1, le=1000, strict=True)
    price: float = Field(ge=0, le=1_000_000, allow_inf_nan=False, strict=True)


class Login(_Behavior):
    event_type: Literal["login"] = "login"


class FailedLogin(_Behavior):
    event_type: Literal["failed_login"] = "failed_login"
    reason: Literal["bad_password", "unknown_device", "locked", "mfa_failed"] = "bad_password"


class PasswordChange(_Behavior):
    event_type: Literal["password_change"] = "password_change"


class AddressChange(_Behavior):
    event_type: Literal["address_change"] = "address_change"
    address_kind: Literal["billing", "shipping"] = "shipping"
    new_country: Country


class PaymentMethodAdded(_Behavior):
    event_type: Literal["payment_method_added"] = "payment_method_added"
    payment_method: PaymentMethod
    card_fingerprint: Fingerprint | None = None


Behavior = Annotated[
    PageView
    | Search
    | AddToCart
    | Login
    | FailedLogin
    | PasswordChange
    | AddressChange
    | PaymentMethodAdded,
    Field(discriminator="event_type"),
]
BEHAVIOR_TYPES: tuple[str, ...] = (
    "page_view",
    "search",
    "add_to_cart",
    "login",
    "failed_login",
    "password_change",
    "address_change",
    "payment_method_added",
)


class FeatureContribution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    value: float | None
    contribution: float


class Decision(_Event):
    """The detector's answer for one purchase; ``event_id`` is the purchase's, so
    consumers deduplicate decisions on it after an at-least-once redelivery."""

    event_type: Literal["decision"] = "decision"
    order_id: Id
    amount: float
    currency: Currency
    probability: float = Field(ge=0, le=1)
    band: Band
    threshold: float
    model_version: str
    top_features: tuple[FeatureContribution, ...] = ()
    latency_ms: dict[str, float] = Field(default_factory=dict)
    decided_at: AwareDatetime
    # Analyst rules (docs/rules.md): the rule-set version in force, the active rules and
    # list entries that decided, the shadow rules that would have, and the model's own band.
    rule_set_version: int | None = None
    rules_fired: tuple[str, ...] = ()
    shadow_rules_fired: tuple[str, ...] = ()
    list_hits: tuple[str, ...] = ()
    model_band: Band | None = None
    # The registry's challenger beside the champion (docs/model-ops.md): its version,
    # probability and band when it scored the purchase (None otherwise), and which of the
    # two decided. ``probability`` and ``model_version`` stay the champion's; with
    # ``served_by == "challenger"`` the band and ``model_band`` follow the challenger.
    challenger_version: str | None = None
    challenger_probability: float | None = Field(default=None, ge=0, le=1)
    challenger_band: Band | None = None
    served_by: ServedBy | None = None


class FraudAlert(_Event):
    """A purchase over the fraud threshold; ``alert_id`` is derived from ``event_id``."""

    event_type: Literal["fraud_alert"] = "fraud_alert"
    alert_id: AlertId
    order_id: Id
    amount: float
    currency: Currency
    probability: float = Field(ge=0, le=1)
    severity: Severity
    band: Band
    model_version: str
    top_features: tuple[FeatureContribution, ...] = ()
    decided_at: AwareDatetime
    # Analyst rules (docs/rules.md): the rule-set version in force, the active rules and
    # list entries that decided, the shadow rules that would have, and the model's own band.
    rule_set_version: int | None = None
    rules_fired: tuple[str, ...] = ()
    shadow_rules_fired: tuple[str, ...] = ()
    list_hits: tuple[str, ...] = ()
    model_band: Band | None = None
    # The registry's challenger beside the champion (docs/model-ops.md): its version,
    # probability and band when it scored the purchase (None otherwise), and which of the
    # two decided. ``probability`` and ``model_version`` stay the champion's; with
    # ``served_by == "challenger"`` the band and ``model_band`` follow the challenger.
    challenger_version: str | None = None
    challenger_probability: float | None = Field(default=None, ge=0, le=1)
    challenger_band: Band | None = None
    served_by: ServedBy | None = None


class Label(_Event):
    """Ground truth for one purchase, known from ``known_at`` on (a chargeback, an
    analyst review). ``event_id`` is the purchase's; ``source`` is the purchase's."""

    event_type: Literal["label"] = "label"
    order_id: Id
    is_fraud: bool
    scenario: Annotated[str, Field(max_length=64)] | None = None
    label_source: Literal["chargeback", "review", "simulator"] = "chargeback"
    known_at: AwareDatetime


class Review(BaseModel):
    """An analyst's verdict on an alert (written by the API, read as a label)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_type: Literal["review"] = "review"
    alert_id: AlertId
    event_id: Id
    user_id: Id
    verdict: Verdict
    note: Annotated[str, Field(max_length=2000)] = ""
    reviewer: Annotated[str, Field(max_length=128)] = "analyst"
    reviewed_at: AwareDatetime


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_FIELD_ORDER: dict[type[BaseModel], tuple[str, ...]] = {}


def trusted(model: type[M], **fields: Any) -> M:
    """An instance of ``model`` from values its producer built to the model's types,
    without validation: the detector's hot path writes a decision per purchase, and
    validating each is ~10x the cost of the rest of writing it. Give every field (no
    defaults are filled in: a missing or unknown field raises ``KeyError``); readers
    validate the bytes with the model as usual, and a unit test validates what the
    detector writes. Fields are kept in the model's order, so the JSON is the model's."""
    order = _FIELD_ORDER.get(model)
    if order is None:
        order = _FIELD_ORDER[model] = tuple(model.model_fields)
    if len(fields) != len(order):
        raise KeyError(f"{model.__name__}: fields {sorted(set(fields) ^ set(order))}")
    obj = model.__new__(model)
    _set(obj, "__dict__", {name: fields[name] for name in order})
    _set(obj, "__pydantic_fields_set__", set(order))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _fields_of(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.__dict__
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_WIRE_OPTS = orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY


def wire_json(obj: BaseModel) -> bytes:
    """``obj`` as the JSON a reader of its model decodes (orjson: a few microseconds)."""
    return orjson.dumps(obj, default=_fields_of, option=_WIRE_OPTS)


def severity_for(probability: float, threshold: float) -> Severity:
    """Map a probability above the alert threshold to a severity for routing."""
    span = max(1.0 - threshold, 1e-9)
    position = (probability - threshold) / span
    if position >= 2 / 3:
        return "critical"
    if position >= 1 / 3:
        return "high"
    return "medium"


def band_for(probability: float, threshold: float, decline_threshold: float) -> Band:
    if probability >= decline_threshold:
        return "decline"
    if probability >= threshold:
        return "review"
    return "approve"


# TypeAdapters are built once: validating through them is the hot path.
PURCHASE = TypeAdapter(Purchase)
BEHAVIOR: TypeAdapter[Behavior] = TypeAdapter(Behavior)
DECISION = TypeAdapter(Decision)
ALERT = TypeAdapter(FraudAlert)
LABEL = TypeAdapter(Label)
REVIEW = TypeAdapter(Review)

# The schema exported by `shopsentry schema export`, one entry per event type.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    "purchase": Purchase,
    "page_view": PageView,
    "search": Search,
    "add_to_cart": AddToCart,
    "login": Login,
    "failed_login": FailedLogin,
    "password_change": PasswordChange,
    "address_change": AddressChange,
    "payment_method_added": PaymentMethodAdded,
    "decision": Decision,
    "fraud_alert": FraudAlert,
    "label": Label,
    "review": Review,
}

# Anything a source may send: a purchase or a behaviour event, picked by ``event_type``.
AnyEvent = Annotated[
    Purchase
    | PageView
    | Search
    | AddToCart
    | Login
    | FailedLogin
    | PasswordChange
    | AddressChange
    | PaymentMethodAdded,
    Field(discriminator="event_type"),
]
