"""The partitioner must match Kafka's, or a user's events would land in different
partitions on the embedded log and on Kafka (breaking per-user order on migration)."""

from __future__ import annotations

import pytest

from shopsentry.bus.partitioner import murmur2, partition_for

# Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2): key bytes -> signed 32-bit murmur2.
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_partition_is_positive_murmur2_modulo_partitions(key: bytes, expected: int) -> None:
    # Kafka's Utils.toPositive(murmur2(key)) % numPartitions
    for partitions in (1, 2, 3, 7, 12):
        assert partition_for(key, partitions) == (expected & 0x7FFFFFFF) % partitions


def test_known_key_partitions() -> None:
    # Worked by hand from the vectors above: toPositive(-790332482) = 1357151166.
    assert partition_for(b"foobar", 3) == 1357151166 % 3 == 0
    assert partition_for(b"abc", 3) == 479470107 % 3 == 0
    assert partition_for(b"21", 2) == (-973932308 & 0x7FFFFFFF) % 2 == 0
