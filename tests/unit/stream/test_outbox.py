"""Outbox blobs round-trip every field of every output, in order."""

from __future__ import annotations

import pytest

from shopsentry.errors import StateCorrupted
from shopsentry.stream.outbox import Outgoing, decode_outbox, encode_outbox


def test_round_trip_keeps_bytes_keys_headers_and_order() -> None:
    outputs = [
        Outgoing("decisions", b"u1", b'{"p": 0.1}'),
        Outgoing("dead-letter", None, b"\xff\x00raw", (("dlq.reason", b"bad"), ("x", b""))),
    ]
    assert decode_outbox(encode_outbox(outputs)) == outputs


def test_an_unreadable_blob_is_a_terminal_error() -> None:
    with pytest.raises(StateCorrupted):
        decode_outbox(b"\xc1not msgpack")
