"""The production state store: Redis, one string key per (namespace, user), one hash of
applied offsets, written together by one Lua script (atomic in Redis).

Why this shape: a batch reads its users with one ``MGET`` round trip and writes with one
script call, so the hot path pays two network round trips per micro-batch however many
events it holds. The script first checks the writer's expected applied offsets (the
fence against a former owner), then writes the states and moves each applied offset
forward only (a stale writer can never move it backwards).
Durability follows the server's configuration (``appendonly yes`` with
``appendfsync everysec`` or ``always``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shopsentry.bus.base import TopicPartition
from shopsentry.errors import StateFenced, StateUnavailable
from shopsentry.features.state_store import NAMESPACES, NOTHING_APPLIED, check_namespace

logger = logging.getLogger(__name__)

# KEYS[1] = the applied hash, KEYS[2] = the outbox pointers (partition -> batch id),
# KEYS[3..] = state keys.
# ARGV = outbox key prefix, batch id ('' = no outbox), blob, n_expected,
#        (field, offset) * n_expected, n_applied, (field, offset) * n_applied,
#        then one value per state key. Returns 0, or the field that fenced the save out.
_SAVE = """
local outbox_prefix, batch_id, blob = ARGV[1], ARGV[2], ARGV[3]
local i = 5
local n_expected = tonumber(ARGV[4])
for _ = 1, n_expected do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if current > tonumber(ARGV[i + 1]) then
    return ARGV[i] .. '=' .. current
  end
  i = i + 2
end
local n_applied = tonumber(ARGV[i])
i = i + 1
local offsets = {}
for _ = 1, n_applied do
  offsets[#offsets + 1] = {ARGV[i], ARGV[i + 1]}
  i = i + 2
end
for k = 3, #KEYS do
  redis.call('SET', KEYS[k], ARGV[i])
  i = i + 1
end
local replaced = {}
for _, pair in ipairs(offsets) do
  local current = tonumber(redis.call('HGET', KEYS[1], pair[1]) or '-1')
  if tonumber(pair[2]) > current then
    redis.call('HSET', KEYS[1], pair[1], pair[2])
  end
  local old = redis.call('HGET', KEYS[2], pair[1])
  if old then replaced[old] = true end
  if batch_id ~= '' then
    redis.call('HSET', KEYS[2], pair[1], batch_id)
  else
    redis.call('HDEL', KEYS[2], pair[1])
  end
end
if batch_id ~= '' then
  redis.call('SET', outbox_prefix .. batch_id, blob)
end
if next(replaced) then
  local live = {}
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do live[v] = true end
  for old, _ in pairs(replaced) do
    if not live[old] then redis.call('DEL', outbox_prefix .. old) end
  end
end
return 0
"""
_CHUNK = 1000


def _field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


class RedisStateStore:
    """:class:`~shopsentry.features.state_store.StateStore` on Redis."""

    def __init__(
        self, url: str, *, prefix: str = "fraud-detector", socket_timeout_s: float = 10.0
    ) -> None:
        import redis

        self._redis_mod = redis
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self.prefix = f"shopsentry:{prefix}"
        self._applied_key = f"{self.prefix}:applied"
        self._outbox_of_key = f"{self.prefix}:outbox_of"
        self._outbox_prefix = f"{self.prefix}:outbox:"
        self._save_script = self._client.register_script(_SAVE)
        self._ns_prefix = {ns: f"{self.prefix}:{ns}:" for ns in NAMESPACES}
        self._call(self._client.ping)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._redis_mod.RedisError as exc:
            raise StateUnavailable(
                f"redis state store failed: {exc}",
                hint="check that redis-server is running and reachable",
            ) from exc

    def load(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        check_namespace(namespace)
        unique = list(dict.fromkeys(keys))
        prefix = self._ns_prefix[namespace]
        found: dict[str, bytes] = {}
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            values = self._call(self._client.mget, [prefix + key for key in chunk])
            found.update(
                (key, value) for key, value in zip(chunk, values, strict=True) if value is not None
            )
        return found

    def applied_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        values = self._call(self._client.hmget, self._applied_key, [_field(tp) for tp in tps])
        return {
            tp: int(v) if v is not None else NOTHING_APPLIED
            for tp, v in zip(tps, values, strict=True)
        }

    def save(
        self,
        changes: Mapping[str, Mapping[str, bytes]],
        applied: Mapping[TopicPartition, int],
        *,
        expected: Mapping[TopicPartition, int] | None = None,
        outbox: tuple[str, bytes] | None = None,
    ) -> None:
        keys: list[str] = [self._applied_key, self._outbox_of_key]
        values: list[bytes] = []
        for namespace, states in changes.items():
            check_namespace(namespace)
            prefix = self._ns_prefix[namespace]
            for key, value in states.items():
                keys.append(prefix + key)
                values.append(value)
        if len(keys) == 2 and not applied:
            return
        batch_id, blob = outbox if outbox is not None else ("", b"")
        args: list[str | int | bytes] = [self._outbox_prefix, batch_id, blob, len(expected or {})]
        for tp, offset in (expected or {}).items():
            args += [_field(tp), offset]
        args.append(len(applied))
        for tp, offset in applied.items():
            args += [_field(tp), offset]
        args += values
        fenced = self._call(lambda: self._save_script(keys=keys, args=args))
        if fenced not in (0, b"0"):
            where = fenced.decode() if isinstance(fenced, bytes) else str(fenced)
            raise StateFenced(
                f"applied offset {where} is beyond this writer's: another worker owns it now",
                hint="the partition moved during the batch; its new owner carries on",
            )

    def outbox(self, tps: Sequence[TopicPartition]) -> list[bytes]:
        if not tps:
            return []
        ids = self._call(self._client.hmget, self._outbox_of_key, [_field(tp) for tp in tps])
        unique = sorted({i for i in ids if i is not None})
        if not unique:
            return []
        blobs = self._call(self._client.mget, [self._outbox_prefix.encode() + i for i in unique])
        return [b for b in blobs if b is not None]

    def items(self, namespace: str) -> Iterator[tuple[str, bytes]]:
        check_namespace(namespace)
        prefix = self._ns_prefix[namespace]
        keys = sorted(
            self._call(lambda: list(self._client.scan_iter(match=prefix + "*", count=1000)))
        )
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            for key, value in zip(chunk, self._call(self._client.mget, chunk), strict=True):
                if value is not None:
                    yield key.decode()[len(prefix) :], value

    def clear(self) -> None:
        keys = list(self._client.scan_iter(match=self.prefix + ":*", count=1000))
        for start in range(0, len(keys), _CHUNK):
            self._call(self._client.delete, *keys[start : start + _CHUNK])

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisStateStore(prefix={self.prefix!r})"
