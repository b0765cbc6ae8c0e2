"""Event schemas (one per type), codec and the traffic simulator."""

from shopsentry.events.codec import decode, decode_as, encode, json_schemas
from shopsentry.events.schema import (
    Decision,
    FraudAlert,
    Label,
    Purchase,
    Review,
)

__all__ = [
    "Decision",
    "FraudAlert",
    "Label",
    "Purchase",
    "Review",
    "decode",
    "decode_as",
    "encode",
    "json_schemas",
]
