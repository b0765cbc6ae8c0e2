"""Record batches of the embedded log survive a round trip exactly, including the
cases the fast path does not take (missing keys, headers, a partly consumed batch)."""

from __future__ import annotations

from shopsentry.bus.base import Record
from shopsentry.bus.local import codec


def test_round_trip_keyed_batch() -> None:
    keys = [b"user-1", b"user-22", b""]
    values = [b'{"a":1}', b"", b"x" * 1000]
    payload = codec.encode_batch([1, 2, 3], keys, values)
    records = codec.decode_batch(payload, "t", 2, 40)
    assert records == [
        Record("t", 2, 40, 1, b"user-1", b'{"a":1}'),
        Record("t", 2, 41, 2, b"user-22", b""),
        Record("t", 2, 42, 3, b"", b"x" * 1000),
    ]
    assert codec.batch_count(payload) == 3
    assert codec.decode_timestamps(payload) == [1, 2, 3]


def test_round_trip_null_keys_and_headers_with_skip() -> None:
    keys = [None, b"k", None, b"k2"]
    values = [b"v0", b"v1", b"v2", b"v3"]
    headers = [
        None,
        (("dlq.reason", b"amount: must be > 0"), ("dlq.offset", b"7")),
        None,
        (("h", b""),),
    ]
    payload = codec.encode_batch([10, 11, 12, 13], keys, values, headers)
    records = codec.decode_batch(payload, "dead-letter", 0, 100, skip=1)
    assert [r.offset for r in records] == [101, 102, 103]
    assert [r.key for r in records] == [b"k", None, b"k2"]
    assert [r.value for r in records] == [b"v1", b"v2", b"v3"]
    assert records[0].header("dlq.reason") == b"amount: must be > 0"
    assert records[1].headers == ()
    assert records[2].headers == (("h", b""),)


def test_skip_everything_but_the_last() -> None:
    payload = codec.encode_batch(list(range(5)), [b"k"] * 5, [bytes([i]) for i in range(5)])
    records = codec.decode_batch(payload, "t", 0, 0, skip=4)
    assert [(r.offset, r.value, r.timestamp_ms) for r in records] == [(4, b"\x04", 4)]
