"""The outbox: a batch's outputs as bytes, saved with its state and re-produced verbatim.

Why: a decision depends on state other partitions' workers keep moving (behaviour), so a
purchase scored again after a crash may get another score. Saving the outputs in the
same atomic write as the state and the offsets, and re-producing those bytes when a
crashed owner's partitions are taken over, makes every re-emitted record the record
emitted the first time (``docs/stream.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from shopsentry.errors import StateCorrupted
from shopsentry.stream.base import Output


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An output read back from an outbox."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] | None = None


def encode_outbox(outputs: Sequence[Output]) -> bytes:
    """The outputs, in order, as one msgpack blob (topic, key, value, headers per output)."""
    blob: bytes = msgpack.packb(
        [
            (o.topic, o.key, o.value, [list(h) for h in o.headers] if o.headers else None)
            for o in outputs
        ],
        use_bin_type=True,
    )
    return blob


def decode_outbox(blob: bytes) -> list[Outgoing]:
    try:
        rows = msgpack.unpackb(blob, raw=False, use_list=True)
        return [
            Outgoing(topic, key, value, tuple((k, v) for k, v in headers) if headers else None)
            for topic, key, value, headers in rows
        ]
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StateCorrupted(f"an outbox entry cannot be read: {exc}") from exc
