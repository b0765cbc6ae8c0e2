"""Schema: every incoming event type validates, round-trips through JSON, and bad input
is refused with an error that names the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from shopsentry.errors import InvalidEvent
from shopsentry.events.codec import decode, decode_as, encode, json_schemas
from shopsentry.events.schema import (
    BEHAVIOR_TYPES,
    EVENT_MODELS,
    Decision,
    FraudAlert,
    Label,
    Purchase,
    Review,
)

WHEN = "2026-03-01T12:34:56.123456Z"


def _base(event_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_id": f"ev-{event_type}",
        "source": "web",
        "user_id": "u-000001",
        "occurred_at": WHEN,
        **extra,
    }


GOOD: dict[str, dict[str, Any]] = {
    "purchase": _base(
        "purchase",
        order_id="o-1",
        amount=129.99,
        currency="EUR",
        item_count=2,
        payment_method="card",
        card_fingerprint="card-ab12",
        device_fingerprint="dev-cd34",
        ip_fingerprint="ip-ef56",
        country="DE",
        billing_country="DE",
        shipping_country="FR",
        merchant_category="electronics",
    ),
    "page_view": _base("page_view", page="/p/123", device_fingerprint="dev-1", country="US"),
    "search": _base("search", query="running shoes"),
    "add_to_cart": _base("add_to_cart", product_id="p-9", quantity=3, price=19.5),
    "login": _base("login", device_fingerprint="dev-1", ip_fingerprint="ip-1", country="GB"),
    "failed_login": _base("failed_login", reason="mfa_failed"),
    "password_change": _base("password_change"),
    "address_change": _base("address_change", address_kind="billing", new_country="NL"),
    "payment_method_added": _base(
        "payment_method_added", payment_method="card", card_fingerprint="card-9"
    ),
}


def _bytes(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def test_every_source_event_type_has_a_good_example() -> None:
    assert set(GOOD) == {"purchase", *BEHAVIOR_TYPES}


@pytest.mark.parametrize("event_type", sorted(GOOD))
def test_good_event_decodes_to_its_model(event_type: str) -> None:
    event = decode(_bytes(GOOD[event_type]))
    assert event.event_type == event_type
    assert type(event) is EVENT_MODELS[event_type]
    assert event.occurred_at == datetime(2026, 3, 1, 12, 34, 56, 123456, tzinfo=UTC)
    assert event.schema_version == 1


@pytest.mark.parametrize("event_type", sorted(GOOD))
def test_json_round_trip_is_lossless_and_canonical(event_type: str) -> None:
    event = decode(_bytes(GOOD[event_type]))
    raw = encode(event)
    again = decode(raw)
    assert again == event
    # Encoding is canonical: encoding the decoded bytes gives the same bytes.
    assert encode(again) == raw


def test_occurred_at_is_normalised_to_utc() -> None:
    doc = dict(GOOD["login"], occurred_at="2026-03-01T14:34:56.123456+02:00")
    event = decode(_bytes(doc))
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at == datetime(2026, 3, 1, 12, 34, 56, 123456, tzinfo=timezone.utc)  # noqa: UP017


BAD: list[tuple[str, str, Any, str]] = [
    # (event type, field, bad value, words the reason must contain)
    ("purchase", "amount", -5, "greater than 0"),
    ("purchase", "amount", 0, "greater than 0"),
    ("purchase", "amount", "lots", "valid number"),
    ("purchase", "item_count", 0, "greater than or equal to 1"),
    ("purchase", "item_count", 1.5, "valid integer"),
    ("purchase", "payment_method", "bitcoin", "Input should be"),
    ("purchase", "country", "usa", "should"),
    ("purchase", "currency", "dollars", "should"),
    ("purchase", "source", "fax", "Input should be 'web', 'mobile' or 'pos'"),
    ("page_view", "source", "", "Input should be"),
    ("purchase", "event_id", "", "at least 1 character"),
    ("purchase", "event_id", "has spaces", "should match pattern"),
    ("search", "user_id", 42, "valid string"),
    ("login", "occurred_at", "yesterday", "datetime"),
    ("login", "occurred_at", "2026-03-01T12:00:00", "timezone"),
    ("add_to_cart", "quantity", -1, "greater than or equal to 1"),
    ("add_to_cart", "price", -0.01, "greater than or equal to 0"),
    ("failed_login", "reason", "cosmic_rays", "Input should be"),
    ("address_change", "new_country", None, "valid string"),
    ("payment_method_added", "payment_method", 7, "Input should be"),
    ("password_change", "schema_version", 2, "Input should be 1"),
]


@pytest.mark.parametrize(("event_type", "field", "value", "words"), BAD)
def test_bad_value_is_refused_naming_the_field(
    event_type: str, field: str, value: Any, words: str
) -> None:
    doc = dict(GOOD[event_type], **{field: value})
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes(doc))
    assert info.value.field == field
    assert words.lower() in info.value.reason.lower()
    assert field in str(info.value)


@pytest.mark.parametrize("event_type", sorted(GOOD))
def test_unknown_field_is_refused(event_type: str) -> None:
    doc = dict(GOOD[event_type], colour="red")
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes(doc))
    assert info.value.field == "colour"
    assert "not permitted" in info.value.reason


@pytest.mark.parametrize("field", ["event_id", "user_id", "source", "occurred_at"])
def test_missing_common_field_is_named(field: str) -> None:
    doc = dict(GOOD["purchase"])
    del doc[field]
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes(doc))
    assert info.value.field == field
    assert "required" in info.value.reason.lower()


def test_missing_purchase_field_is_named() -> None:
    doc = dict(GOOD["purchase"])
    del doc["order_id"]
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes(doc))
    assert info.value.field == "order_id"


def test_every_error_is_reported_not_only_the_first() -> None:
    doc = dict(GOOD["purchase"], amount=-1, item_count=0)
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes(doc))
    assert {e["field"] for e in info.value.errors} >= {"amount", "item_count"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"not json", "(event)"),
        (b"[1, 2]", "(event)"),
        (b"{}", "event_type"),
        (b'{"event_type": "teleport"}', "event_type"),
        (b'{"event_type": "decision"}', "event_type"),  # not an incoming event type
        (b"", "(event)"),
        (b"\xff\xfe", "(event)"),
    ],
)
def test_malformed_payload_is_refused(payload: bytes, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(payload)
    assert info.value.field == field


def test_oversized_payload_is_refused_before_parsing() -> None:
    doc = dict(GOOD["search"], query="x" * 400)
    raw = _bytes(doc)
    assert decode(raw, max_bytes=len(raw)).event_type == "search"
    with pytest.raises(InvalidEvent) as info:
        decode(raw, max_bytes=len(raw) - 1)
    assert info.value.field == "(event)"
    assert "exceeds" in info.value.reason
    # Even a huge payload that is not JSON at all is refused on size, cheaply.
    with pytest.raises(InvalidEvent, match="exceeds"):
        decode(b"{" * 1_000_000, max_bytes=65536)


def test_field_too_long_is_refused() -> None:
    doc = dict(GOOD["search"], query="x" * 513)
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes(doc))
    assert info.value.field == "query"


def test_non_finite_amount_is_refused() -> None:
    raw = _bytes(GOOD["purchase"]).replace(b"129.99", b"NaN")
    with pytest.raises(InvalidEvent):
        decode(raw)


def test_out_of_band_types_round_trip() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    common = {"event_id": "ev-1", "source": "mobile", "user_id": "u-1", "occurred_at": now}
    decision = Decision(
        **common,
        order_id="o-1",
        amount=10.0,
        currency="USD",
        probability=0.8,
        band="review",
        threshold=0.7,
        model_version="3",
        decided_at=now,
    )
    alert = FraudAlert(
        **common,
        alert_id="alert-ev-1",
        order_id="o-1",
        amount=10.0,
        currency="USD",
        probability=0.8,
        severity="medium",
        band="review",
        model_version="3",
        decided_at=now,
    )
    label = Label(
        **common,
        order_id="o-1",
        is_fraud=True,
        scenario="card_testing",
        known_at=now + timedelta(days=3),
    )
    review = Review(
        alert_id="alert-ev-1",
        event_id="ev-1",
        user_id="u-1",
        verdict="confirmed_fraud",
        reviewed_at=now,
    )
    for kind, model in [
        ("decision", decision),
        ("fraud_alert", alert),
        ("label", label),
        ("review", review),
    ]:
        assert decode_as(kind, encode(model)) == model


def test_label_refuses_probability_like_junk() -> None:
    doc = {
        "event_type": "label",
        "event_id": "ev-1",
        "source": "web",
        "user_id": "u-1",
        "occurred_at": WHEN,
        "order_id": "o-1",
        "is_fraud": "maybe",
        "known_at": WHEN,
    }
    with pytest.raises(InvalidEvent) as info:
        decode_as("label", _bytes(doc))
    assert info.value.field == "is_fraud"


def test_json_schema_export_covers_every_type_and_requires_the_common_fields() -> None:
    schemas = json_schemas()
    assert set(schemas) == set(EVENT_MODELS)
    for name, schema in schemas.items():
        assert schema["type"] == "object"
        if name == "review":
            continue
        for field in ("event_id", "source", "user_id", "occurred_at"):
            assert field in schema["properties"], (name, field)
            assert field in schema["required"], (name, field)
        assert schema["additionalProperties"] is False
    purchase = schemas["purchase"]["properties"]
    assert purchase["amount"]["exclusiveMinimum"] == 0
    assert set(purchase["source"]["enum"]) == {"web", "mobile", "pos"}
    assert orjson.loads(orjson.dumps(schemas)) == schemas  # plain JSON, exportable as a file


def test_json_schema_agrees_with_the_validator_on_required_fields() -> None:
    """What the exported schema calls required is exactly what the validator rejects when absent."""
    schema = json_schemas()["purchase"]
    for field in set(schema["properties"]):
        doc = dict(GOOD["purchase"])
        doc.pop(field, None)
        if field in schema["required"]:
            with pytest.raises(InvalidEvent) as info:
                decode(_bytes(doc))
            assert info.value.field == field
        else:
            assert isinstance(decode(_bytes(doc)), Purchase)


def test_an_alert_for_the_longest_event_id_is_valid() -> None:
    """alert_id is "alert-" + event_id, so it must fit an event id of the full 64 chars."""
    from shopsentry.events.schema import ALERT

    event_id = "e" * 64
    alert = {
        "event_id": event_id,
        "alert_id": "alert-" + event_id,
        "source": "web",
        "user_id": "u1",
        "occurred_at": "2026-11-25T10:00:00Z",
        "order_id": "o1",
        "amount": 10.0,
        "currency": "USD",
        "probability": 0.9,
        "severity": "high",
        "band": "review",
        "model_version": "1",
        "decided_at": "2026-11-25T10:00:01Z",
    }
    assert ALERT.validate_python(alert).alert_id == "alert-" + event_id


ENTITY_FIELDS = ("store_id", "terminal_id", "shipping_address_hash")


def test_entity_fields_are_optional_and_round_trip() -> None:
    """A purchase written before the entity fields existed still decodes (to None); one
    with them keeps them through JSON; the exported schema lists them as optional."""
    old = decode(_bytes(GOOD["purchase"]))
    assert isinstance(old, Purchase)
    assert (old.store_id, old.terminal_id, old.shipping_address_hash) == (None, None, None)
    pos = {**GOOD["purchase"], "source": "pos", "store_id": "st-7", "terminal_id": "st-7:t-2"}
    web = {**GOOD["purchase"], "shipping_address_hash": "addr-9f3c"}
    for doc in (pos, web):
        event = decode(_bytes(doc))
        assert decode(encode(event)) == event
        for field in ENTITY_FIELDS:
            assert getattr(event, field) == doc.get(field)
    schema = json_schemas()["purchase"]
    for field in ENTITY_FIELDS:
        assert field in schema["properties"] and field not in schema["required"]


@pytest.mark.parametrize("field", ENTITY_FIELDS)
def test_bad_entity_field_is_refused_naming_it(field: str) -> None:
    bad = "x" * 200 if field == "shipping_address_hash" else "has spaces"
    with pytest.raises(InvalidEvent) as info:
        decode(_bytes({**GOOD["purchase"], field: bad}))
    assert info.value.field == field
