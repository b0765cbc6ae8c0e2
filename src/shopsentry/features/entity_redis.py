"""The entity store on Redis (production): every worker of every machine shares it.

A batch of deltas is one optimistic transaction: ``WATCH`` the keys it reads (the
purchases' markers, pending labels, the entity states), read them, compute the new
states in Python with the same code as the embedded store
(:func:`~shopsentry.features.entity_store.apply_all`), then ``MULTI`` / ``SET`` /
``EXEC``. If another worker changed any watched key in between, ``EXEC`` writes nothing
and the batch is recomputed from a fresh read — so two workers updating one entity both
count, and a redelivered purchase (its marker already set) counts nothing. Keys expire
(entity states after 31 days without a purchase, purchase markers after 45), so the
store stays bounded.

The common case takes one round trip instead: when the worker's batch read (the entity
states it computed from) is still what Redis holds, and no purchase of the batch has a
marker or a pending label, a Lua compare-and-set checks exactly that and writes the
batch's markers and states atomically; any difference writes nothing and the batch
takes the ``WATCH`` transaction above.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shopsentry.bus.base import TopicPartition
from shopsentry.features.entity import EntityState
from shopsentry.features.entity_store import (
    EntityPurchase,
    EntityStoreUnavailable,
    LabelPositions,
    Prepared,
    apply_all,
    position_key,
)

if TYPE_CHECKING:
    from shopsentry.features.offline import KnownLabel

logger = logging.getLogger(__name__)

ENTITY_TTL_S = 31 * 86_400
MARKER_TTL_S = 45 * 86_400
_MAX_ATTEMPTS = 50

# Compare-and-set of one batch (the fast path): KEYS[1..n] must hold what the worker read
# (ARGV pairs: '1' + the bytes, or '0' + '' for no key), then KEYS[n+1..] are set (ARGV
# pairs: value, TTL in seconds). ARGV[1] = n. Returns 1 if it wrote, 0 if a key differed
# (another worker wrote in between, or a label is pending): nothing is written then.
_CAS = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local stored = redis.call('GET', KEYS[i])
  local present, expected = ARGV[2 * i], ARGV[2 * i + 1]
  if present == '0' then
    if stored then return 0 end
  elseif stored ~= expected then
    return 0
  end
end
local a = 2 * n + 2
for k = n + 1, #KEYS do
  redis.call('SET', KEYS[k], ARGV[a], 'EX', ARGV[a + 1])
  a = a + 2
end
return 1
"""


class RedisEntityStore:
    """:class:`~shopsentry.features.entity_store.EntityStore` on Redis."""

    def __init__(
        self, url: str, *, prefix: str = "fraud-detector", socket_timeout_s: float = 10.0
    ) -> None:
        import redis

        self._errors = redis.RedisError
        self.prefix = f"shopsentry:{prefix}:entity:"
        timeout = {"socket_timeout": socket_timeout_s, "socket_connect_timeout": socket_timeout_s}
        self._client: Any = redis.Redis.from_url(url, **timeout)
        self._cas = self._client.register_script(_CAS)
        self._call(self._client.ping)

    def _call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, a Redis failure raised as the store's transient error (the
        batch is retried; entity state is never read as empty because Redis is down)."""
        try:
            return fn(*args)
        except self._errors as exc:
            raise EntityStoreUnavailable(
                f"redis entity store failed: {exc}", hint="is redis-server up and reachable?"
            ) from exc

    def load(self, keys: Sequence[str]) -> dict[str, EntityState]:
        if not keys:
            return {}
        return {k: EntityState.from_bytes(v) for k, v in self.read(keys).items()}

    def read(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        if not keys:
            return {}
        values = self._call(self._client.mget, [f"{self.prefix}e:{k}" for k in keys])
        return dict(zip(keys, values, strict=True))

    def read_versioned(self, keys: Sequence[str]) -> tuple[dict[str, bytes | None], None]:
        return self.read(keys), None  # no store-wide version: the write step compares

    def positions(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        values = self._call(self._client.mget, [self.prefix + position_key(tp) for tp in tps])
        return {tp: int(v) for tp, v in zip(tps, values, strict=True) if v is not None}

    def _transaction(
        self,
        purchases: Sequence[EntityPurchase],
        labels: Sequence[KnownLabel],
        at: LabelPositions | None = None,
        prepared: Prepared | None = None,
    ) -> int:
        prefix = self.prefix
        tps = {*at.reached, *at.started} if at is not None else set()
        watched = [prefix + position_key(tp) for tp in sorted(tps)]
        watched += [f"{prefix}p:{p.event_id}" for p in purchases]
        watched += [f"{prefix}l:{p.event_id}" for p in purchases]
        watched += [f"{prefix}e:{k}" for p in purchases for k in p.keys]
        watched += [f"{prefix}p:{lb.event_id}" for lb in labels]
        watched = list(dict.fromkeys(watched))
        import redis

        watch_error = redis.WatchError
        written = prepared
        for _ in range(_MAX_ATTEMPTS):
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watched)
                    seen: dict[str, bytes | None] = dict(
                        zip(watched, pipe.mget(watched), strict=True)
                    )

                    def get(key: str, seen: dict[str, bytes | None] = seen) -> bytes | None:
                        full = prefix + key
                        if full in seen:
                            return seen[full]
                        pipe.watch(full)  # an entity a label names: watched before read
                        value: bytes | None = pipe.get(full)
                        seen[full] = value
                        return value

                    writes, deletes, done, states = apply_all(get, purchases, labels, at, prepared)
                    prepared = None  # used once (see apply_all): a retry re-applies
                    pipe.multi()
                    for key, value in writes.items():
                        if key.startswith("q:"):  # a position: kept while the group lives
                            pipe.set(prefix + key, value)
                            continue
                        ttl = MARKER_TTL_S if key.startswith(("p:", "l:")) else ENTITY_TTL_S
                        pipe.set(prefix + key, value, ex=ttl)
                    if deletes:
                        pipe.delete(*(prefix + key for key in deletes))
                    pipe.execute()
                    if written is not None:
                        written.wrote(states, writes)
                    return done
                except watch_error:
                    logger.debug("entity update raced another worker: retrying")
                    continue
        raise EntityStoreUnavailable(
            f"entity update lost {_MAX_ATTEMPTS} races in a row",
            hint="too many workers on one entity at once; retry the batch",
        )

    def _compare_and_set(self, purchases: Sequence[EntityPurchase], prepared: Prepared) -> int:
        """The batch in one round trip, if the store still holds what the worker read
        (no marker, no pending label, every entity's bytes as read): the states written
        as prepared. -1 (nothing written) otherwise: the caller takes the transaction."""
        read = prepared.read

        def get(key: str) -> bytes | None:
            return read.get(key[2:]) if key.startswith("e:") else None

        writes, _, done, states = apply_all(get, purchases, (), None, prepared, True)
        prefix = self.prefix
        checks: dict[str, bytes | None] = {}
        for p in purchases:
            checks[f"{prefix}p:{p.event_id}"] = None
            checks[f"{prefix}l:{p.event_id}"] = None
            for key in p.keys:
                checks[f"{prefix}e:{key}"] = read[key]
        keys = list(checks)
        args: list[bytes | str | int] = [len(keys)]
        for value in checks.values():
            args += ["0", ""] if value is None else ["1", value]
        for key, value in writes.items():
            keys.append(prefix + key)
            args += [value, MARKER_TTL_S if key.startswith("p:") else ENTITY_TTL_S]
        if int(self._cas(keys=keys, args=args)) != 1:
            return -1
        prepared.wrote(states, writes)
        return done

    def apply_purchases(
        self, purchases: Sequence[EntityPurchase], prepared: Prepared | None = None
    ) -> int:
        """One compare-and-set round trip when nobody else touched the batch's entities
        (the common case: see :meth:`_compare_and_set`), else the ``WATCH`` transaction."""
        if not purchases:
            return 0
        if prepared is not None and all(k in prepared.read for p in purchases for k in p.keys):
            done = int(self._call(self._compare_and_set, purchases, prepared))
            if done >= 0:
                return done
        return int(self._call(self._transaction, purchases, (), None, prepared))

    def apply_labels(self, labels: Sequence[KnownLabel], at: LabelPositions | None = None) -> int:
        if not labels and at is None:
            return 0
        return int(self._call(self._transaction, (), labels, at))

    def close(self) -> None:
        self._client.close()
