"""A backup of the Redis feature state keeps each key's expiry: restored, entity states
and their markers expire when they would have, not never; a key whose time passed while
it sat in the backup is not brought back."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from shopsentry.backup.parts import StatePart
from shopsentry.config import Settings


def test_restored_keys_keep_their_expiry(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", state={"backend": "redis", "redis_url": redis_url}
    )
    prefix = f"shopsentry:{settings.detector.group_id}:"
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(prefix + "entity:e:device:d1", b"state", ex=31 * 86_400)
        client.set(prefix + "entity:p:ev-1", b"1", px=1_500)  # gone before the restore
        client.set(prefix + "u:alice", b"user state")  # no expiry
        client.hset(prefix + "applied", "purchase-events:0", 41)
        snapshot = StatePart().snapshot(settings, tmp_path / "backup")
        assert snapshot is not None
        assert snapshot.offsets[settings.detector.group_id] == {"purchase-events:0": 42}

        client.flushdb()
        time.sleep(1.6)  # the marker's expiry passes while it is only in the backup
        StatePart().restore(settings, tmp_path / "backup")

        ttl_s = client.ttl(prefix + "entity:e:device:d1")
        assert 30 * 86_400 < ttl_s <= 31 * 86_400
        assert client.get(prefix + "entity:e:device:d1") == b"state"
        assert client.exists(prefix + "entity:p:ev-1") == 0
        assert client.ttl(prefix + "u:alice") == -1 and client.get(prefix + "u:alice")
        assert client.hget(prefix + "applied", "purchase-events:0") == b"41"
    finally:
        client.flushdb()
        client.close()
