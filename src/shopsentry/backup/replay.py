"""After a restore, the decisions already on the log stand: a replayed purchase keeps its
first decision instead of being scored again.

Why: a restore rewinds the detector to the state of the backup, and the purchases
decided between the backup and the disaster are replayed. Their features are computed
again from a state that is reached in a different order: the user's behaviour (another
topic, often another worker) and the shared entity states (other users' purchases on
other partitions) stand wherever the replay's reads have taken them, not where the
live run's reads stood. The drill measured it (embedded log, 86 purchases replayed,
the same model version and rule set throughout): 20 got another feature vector — 17 in
the behaviour features (``seconds_since_last_behavior`` 15 times, ``browse_events_30m``
11, ``new_device``/``new_ip``/``cart_adds_30m``/``account_age_days`` 10: the behaviour
partition read behind the purchases, so a new user looked like one with no behaviour,
or ahead of them, so the last behaviour was up to two hours in the purchase's future)
and 3 in the entity features (a shared device's, IP's or terminal's purchases counted
in another order) — and so another probability. The state itself was consistent: the
backup copies the per-user states, the recent event ids and the entity states with
their offsets (see :mod:`shopsentry.backup.parts`).

So the restore collects the ``event_id`` of every decision on the log since the backup
began (:func:`decided_since`; a purchase applied after the backup's copy was decided
after it) into a *ledger* beside the feature state (:func:`write_ledger`): a file in the
state directory with LMDB, a Redis set with Redis. A detector worker loads it at start
(:func:`load_ledger`) and, for a purchase the ledger names, updates every feature as
usual but emits no second decision or alert (:class:`ReplayedDecisions`): the log's
first one is the decision, and the readers replaying the log (warehouse, alert read
model) see exactly it. The ledger holds at most what was decided since the last backup
(an hour with hourly backups); the next restore replaces it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import orjson

if TYPE_CHECKING:
    from pathlib import Path

    from shopsentry.config import Settings

logger = logging.getLogger(__name__)


class InputRecord(Protocol):
    """What the ledger reads of an input record (``bus.base.Record``)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class OutputRecord(Protocol):
    """What the ledger reads of a detector output (``detection.routing.OutRecord``)."""

    @property
    def topic(self) -> str: ...

    @property
    def value(self) -> bytes: ...


R = TypeVar("R", bound=OutputRecord)


def decided_since(settings: Settings, since: dict[str, int]) -> set[str]:
    """The ``event_id`` of every decision on the log from ``since`` ("topic:partition" →
    offset; a partition it does not name: from its first retained offset) to its end."""
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.bus.reading import read_to_end

    topic = settings.topics.decisions.name
    starts = {
        int(key.rsplit(":", 1)[1]): offset
        for key, offset in since.items()
        if key.rsplit(":", 1)[0] == topic
    }
    log = open_log(BusConfig.from_settings(settings))
    try:
        return {
            str(orjson.loads(r.value)["event_id"]) for r in read_to_end(log, topic, starts=starts)
        }
    finally:
        log.close()


def purchase_ends(settings: Settings) -> dict[int, int]:
    """The purchase topic's end offset per partition: every purchase decided so far is
    below it, so a replayed record at or past it is new and needs no ledger look-up."""
    from shopsentry.bus import BusConfig, open_log

    topic = settings.topics.purchase_events.name
    log = open_log(BusConfig.from_settings(settings))
    try:
        if topic not in log.list_topics():
            return {}
        return {p.partition: p.end_offset for p in log.describe_topic(topic).partitions}
    finally:
        log.close()


@dataclass
class Ledger:
    event_ids: set[str] = field(default_factory=set)  # purchases decided since the backup
    until: dict[int, int] = field(default_factory=dict)  # purchase partition → end offset


def _ledger_file(settings: Settings) -> Path:
    return settings.state_dir / f"{settings.detector.group_id}.replayed-decisions.json"


def _ledger_key(settings: Settings) -> str:
    return f"shopsentry:{settings.detector.group_id}:replayed-decisions"


def write_ledger(settings: Settings, ledger: Ledger) -> int:
    """Replace the ledger; returns how many purchases it names."""
    ids = sorted(ledger.event_ids)
    until = {str(p): o for p, o in ledger.until.items()}
    if settings.state.backend == "redis":
        import redis

        key = _ledger_key(settings)
        client = redis.Redis.from_url(settings.state.redis_url.get_secret_value())
        try:
            pipe = client.pipeline(transaction=True)
            pipe.delete(key, f"{key}:until")
            for chunk in range(0, len(ids), 10_000):
                pipe.sadd(key, *ids[chunk : chunk + 10_000])
            pipe.set(f"{key}:until", json.dumps(until))
            pipe.execute()
        finally:
            client.close()
        return len(ids)
    path = _ledger_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"until": until, "event_ids": ids}))
    os.replace(tmp, path)
    return len(ids)


def load_ledger(settings: Settings) -> Ledger:
    """What the last restore found on the log (empty: no restore, or nothing decided)."""
    if settings.state.backend == "redis":
        import redis

        key = _ledger_key(settings)
        client = redis.Redis.from_url(settings.state.redis_url.get_secret_value())
        try:
            members = client.smembers(key)
            until = json.loads(client.get(f"{key}:until") or "{}")
        finally:
            client.close()
        return Ledger(
            {m.decode() if isinstance(m, bytes) else m for m in members},
            {int(p): int(o) for p, o in until.items()},
        )
    path = _ledger_file(settings)
    if not path.exists():
        return Ledger()
    raw = json.loads(path.read_text())
    return Ledger(set(raw["event_ids"]), {int(p): int(o) for p, o in raw["until"].items()})


class ReplayedDecisions:
    """Drops a detector's decision and alert for a purchase whose decision is on the
    log already (the ledger). An id leaves memory once the batch that passed it is
    saved (:meth:`saved`); a batch that failed runs again and is filtered again. A batch
    with no purchase below the ledger's end offsets is not looked at (the steady state
    after a replay costs one offset comparison per purchase record)."""

    def __init__(self, ledger: Ledger, topics: Sequence[str], purchase_topic: str) -> None:
        self.pending = ledger.event_ids
        self.until = ledger.until
        self.topics = frozenset(topics)
        self.purchase_topic = purchase_topic
        self.kept = 0  # purchases whose decision was left as the log has it
        self._passed: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.pending)

    def replays(self, records: Sequence[InputRecord]) -> bool:
        """Whether the batch holds a purchase that may have been decided before."""
        until, topic = self.until, self.purchase_topic
        return any(r.offset < until.get(r.partition, 0) for r in records if r.topic == topic)

    def filter(self, outputs: list[R]) -> list[R]:
        """``outputs`` without the decisions and alerts of purchases already decided."""
        kept: list[R] = []
        for out in outputs:
            if out.topic in self.topics:
                event_id = str(orjson.loads(out.value)["event_id"])
                if event_id in self.pending:
                    self._passed.add(event_id)
                    continue
            kept.append(out)
        return kept

    def saved(self) -> int:
        """The filtered batch is saved: its purchases are never replayed again."""
        done = len(self._passed)
        self.kept += done
        self.pending -= self._passed
        self._passed = set()
        return done

    def reset(self) -> None:
        self._passed = set()
