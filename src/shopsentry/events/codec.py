"""Bytes ⇄ events, with errors that name the field at fault.

The detector, the loader, the API and the kcat interop test all decode through here,
so one event is valid or invalid the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from shopsentry.errors import InvalidEvent
from shopsentry.events.schema import (
    ALERT,
    DECISION,
    EVENT_MODELS,
    LABEL,
    PURCHASE,
    REVIEW,
    AnyEvent,
)

_ADAPTER_BY_TYPE: dict[str, TypeAdapter[Any]] = {
    "purchase": PURCHASE,
    "decision": DECISION,
    "fraud_alert": ALERT,
    "label": LABEL,
    "review": REVIEW,
}

# Any incoming (source) event: purchase or a behaviour type, chosen by ``event_type``.
_INCOMING: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def _explain(exc: ValidationError) -> InvalidEvent:
    errors = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # Drop the discriminator tag pydantic puts first for tagged unions.
        if loc and loc[0] in EVENT_MODELS and len(loc) > 1:
            loc = loc[1:]
        field = ".".join(loc) or (
            "event_type" if err["type"].startswith("union_tag") else "(event)"
        )
        errors.append({"field": field, "reason": err["msg"]})
    first = errors[0]
    return InvalidEvent(first["reason"], field=first["field"], errors=errors)


def decode(value: bytes | str, *, max_bytes: int | None = None) -> AnyEvent:
    """Decode one incoming event (purchase or behaviour), picked by its ``event_type``."""
    if max_bytes is not None and len(value) > max_bytes:
        raise InvalidEvent(
            f"payload of {len(value)} bytes exceeds the limit of {max_bytes}", field="(event)"
        )
    try:
        return _INCOMING.validate_json(value)
    except ValidationError as exc:
        raise _explain(exc) from None


def decode_as(kind: str, value: bytes | str) -> Any:
    """Decode a value known to be of one kind ('purchase', 'decision', 'fraud_alert', ...)."""
    adapter = _ADAPTER_BY_TYPE.get(kind) or TypeAdapter(EVENT_MODELS[kind])
    try:
        return adapter.validate_json(value)
    except ValidationError as exc:
        raise _explain(exc) from None


def encode(event: BaseModel) -> bytes:
    """Compact JSON, UTC timestamps with a ``Z``-free ISO offset, as every reader expects."""
    return event.model_dump_json(exclude_none=False).encode()


def json_schemas() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every event type, keyed by event type."""
    return {
        name: model.model_json_schema(mode="serialization") for name, model in EVENT_MODELS.items()
    }
