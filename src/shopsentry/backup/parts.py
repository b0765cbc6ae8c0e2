"""What a backup holds: one :class:`BackupPart` per store that the log cannot rebuild.

A part knows the live files (or keys) it owns, how to copy them consistently into a
directory, which consumer group's log offsets the copy corresponds to, and how to put a
copy back. The backup machinery (:mod:`shopsentry.backup.archive`) only walks
:data:`PARTS`; a new store (rules and lists, say) is one :func:`register_part` call with a
:class:`SqlitePart` or its own class.

Consistency per part: DuckDB is copied while a read-only connection holds its lock (no
writer can commit mid-copy); SQLite files through SQLite's online backup API; LMDB with
``env.copy`` (a read transaction's snapshot); Redis with one Lua script that dumps every
key of the state prefix and the applied offsets atomically. Each part records the log
offsets its copy reflects, read from inside the copy itself, so a restore resumes every
consumer exactly where its restored state left off.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import sqlite3
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

# group → "topic:partition" → next offset to read
GroupOffsets = dict[str, dict[str, int]]


@dataclass
class PartSnapshot:
    """What a part's copy reflects: the consumer groups' next offsets, and notes."""

    offsets: GroupOffsets = field(default_factory=dict)
    topics: dict[str, list[str]] = field(default_factory=dict)  # group → topics it reads
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class BackupPart(Protocol):
    name: str

    def live_paths(self, settings: Settings) -> list[Path]:
        """The files and directories this part owns in the data dir (may not exist)."""
        ...

    def snapshot(self, settings: Settings, into: Path) -> PartSnapshot | None:
        """Copy the live store into ``into``; None when there is nothing to back up."""
        ...

    def restore(self, settings: Settings, staged: Path) -> None:
        """Put the copy in ``staged`` in place (the live paths were moved aside)."""
        ...


def tp_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def _sqlite_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _place(staged: Path, live: Path) -> None:
    live.parent.mkdir(parents=True, exist_ok=True)
    if live.exists():
        shutil.rmtree(live) if live.is_dir() else live.unlink()
    shutil.move(str(staged), str(live))


@dataclass
class SqlitePart:
    """SQLite files found by ``paths`` (relative to the data dir when restored), copied
    with the online backup API. ``offsets`` reads the log offsets out of a copy."""

    name: str
    paths: Callable[[Settings], list[Path]]
    offsets: Callable[[Settings, sqlite3.Connection], PartSnapshot] | None = None

    def live_paths(self, settings: Settings) -> list[Path]:
        found = []
        for path in self.paths(settings):
            found += [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]
        return found

    def snapshot(self, settings: Settings, into: Path) -> PartSnapshot | None:
        existing = [p for p in self.paths(settings) if p.is_file()]
        if not existing:
            return None
        result = PartSnapshot()
        for path in existing:
            copy = into / path.resolve().relative_to(settings.data_dir.resolve())
            _sqlite_copy(path, copy)
            if self.offsets is not None:
                con = sqlite3.connect(copy)
                try:
                    found = self.offsets(settings, con)
                finally:
                    con.close()
                result.offsets.update(found.offsets)
                result.topics.update(found.topics)
        return result

    def restore(self, settings: Settings, staged: Path) -> None:
        for copy in sorted(p for p in staged.rglob("*") if p.is_file()):
            _place(copy, settings.data_dir / copy.relative_to(staged))


def _read_model_offsets(settings: Settings, con: sqlite3.Connection) -> PartSnapshot:
    from shopsentry.api.consumer import store_topics

    rows = con.execute("select topic, partition, next_offset from offsets").fetchall()
    group = settings.api.store_group_id
    return PartSnapshot(
        offsets={group: {tp_key(t, int(p)): int(o) for t, p, o in rows}},
        topics={group: sorted(store_topics(settings.topics).values())},
    )


class WarehousePart:
    """The whole DuckDB file: reviews, labels and run history live nowhere else once the
    log's retention has passed, and a file copy is faster than picking tables apart."""

    name = "warehouse"

    def live_paths(self, settings: Settings) -> list[Path]:
        path = settings.warehouse_path
        return [path, Path(f"{path}.wal")]

    def snapshot(self, settings: Settings, into: Path) -> PartSnapshot | None:
        from shopsentry.warehouse.db import connect
        from shopsentry.warehouse.loader import OFFSETS_TABLE, RAW_TABLES

        path = settings.warehouse_path
        if not path.exists():
            return None
        into.mkdir(parents=True, exist_ok=True)
        # Readers share DuckDB's lock and a writer needs it alone: while this connection
        # is open nothing can commit, so the bytes copied are one committed state.
        with connect(settings.warehouse_path, read_only=True) as con:
            for live in self.live_paths(settings):
                if live.exists():
                    shutil.copy2(live, into / live.name)
            rows = con.execute(
                f"select consumer_group, topic, partition, next_offset from {OFFSETS_TABLE}"
            ).fetchall()
        snap = PartSnapshot()
        for group, topic, partition, offset in rows:
            snap.offsets.setdefault(group, {})[tp_key(topic, int(partition))] = int(offset)
        group = settings.warehouse.loader_group_id
        snap.topics[group] = sorted(getattr(settings.topics, t.topic_attr).name for t in RAW_TABLES)
        return snap

    def restore(self, settings: Settings, staged: Path) -> None:
        for live in self.live_paths(settings):
            copy = staged / live.name
            if copy.exists():
                _place(copy, live)


class RegistryPart:
    """The MLflow registry (its SQLite database and artifact directory) and the data
    dir's model versions with the champion pointer the detector follows. A tracking
    server (``model.tracking_uri`` not ``sqlite:``) is backed up by its own operators;
    the model versions and pointer are still copied."""

    name = "registry"

    def _db(self, settings: Settings) -> Path | None:
        uri = settings.mlflow_tracking_uri
        return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None

    def live_paths(self, settings: Settings) -> list[Path]:
        from shopsentry.models.scorer import ModelFiles

        db = self._db(settings)
        dirs = [settings.mlflow_artifact_dir, ModelFiles.from_settings(settings).directory]
        return [*dirs, *([db] if db is not None else [])]

    def snapshot(self, settings: Settings, into: Path) -> PartSnapshot | None:
        from shopsentry.models.scorer import ModelFiles

        db = self._db(settings)
        if db is not None and not db.exists():
            return None
        into.mkdir(parents=True, exist_ok=True)
        snap = PartSnapshot()
        # Database first: every artifact it names was written before its row, so the
        # files copied after it are a superset of what it references.
        if db is None:
            snap.notes.append(f"tracking server {settings.mlflow_tracking_uri} not copied")
        else:
            _sqlite_copy(db, into / "mlflow.db")
        for source, name in (
            (settings.mlflow_artifact_dir, "mlartifacts"),
            (ModelFiles.from_settings(settings).directory, "models"),
        ):
            if source.is_dir():
                shutil.copytree(source, into / name)
        return snap

    def restore(self, settings: Settings, staged: Path) -> None:
        from shopsentry.models.scorer import ModelFiles

        db = self._db(settings)
        if db is not None and (staged / "mlflow.db").exists():
            _place(staged / "mlflow.db", db)
        for live, name in (
            (settings.mlflow_artifact_dir, "mlartifacts"),
            (ModelFiles.from_settings(settings).directory, "models"),
        ):
            if (staged / name).exists():
                _place(staged / name, live)


_APPLIED_OFFSET = struct.Struct(">q")
_ENTITY_ENV = ".entities.lmdb"  # features/entity_store.py: open_entity_store
# Every key under the prefix (with when it expires: Unix ms, 0 for never) and the
# applied hash, in one atomic step.
_REDIS_DUMP = """
local out = {}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local pttl = redis.call('PTTL', key)
  out[#out + 1] = key
  out[#out + 1] = redis.call('DUMP', key)
  out[#out + 1] = pttl > 0 and now_ms + pttl or 0
end
return {out, redis.call('HGETALL', ARGV[2])}
"""


class StatePart:
    """The detector's feature state with its applied offsets (LMDB or Redis)."""

    name = "state"

    def live_paths(self, settings: Settings) -> list[Path]:
        if settings.state.backend == "redis":
            return []
        return sorted(settings.state_dir.glob("*.lmdb"))

    def snapshot(self, settings: Settings, into: Path) -> PartSnapshot | None:
        if settings.state.backend == "redis":
            return self._snapshot_redis(settings, into)
        envs = self.live_paths(settings)
        if not envs:
            return None
        snap = PartSnapshot()
        # The per-user states (with their applied offsets) first, the shared entity
        # states after: a batch updates the entities before it saves the user states, so
        # the entity copy holds at least every purchase the user copy applied; one it
        # holds beyond them is replayed and skipped there (its event_id is recorded).
        for env_path in sorted(envs, key=lambda p: p.name.endswith(_ENTITY_ENV)):
            copy = into / env_path.name
            copy.mkdir(parents=True)
            applied = _lmdb_copy(env_path, copy)
            if env_path.name.endswith(_ENTITY_ENV):
                continue  # no offsets of its own: it follows the user states' group
            group = env_path.stem
            snap.offsets[group] = {k: v + 1 for k, v in applied.items()}
            snap.topics[group] = _detector_topics(settings)
        return snap

    def _snapshot_redis(self, settings: Settings, into: Path) -> PartSnapshot:
        import redis

        group = settings.detector.group_id
        prefix = f"shopsentry:{group}:"
        client = redis.Redis.from_url(settings.state.redis_url.get_secret_value())
        try:
            flat, applied = client.eval(_REDIS_DUMP, 0, prefix + "*", prefix + "applied")
        finally:
            client.close()
        into.mkdir(parents=True, exist_ok=True)
        dumped = [
            [k.decode(), base64.b64encode(v).decode(), int(expires_at_ms)]
            for k, v, expires_at_ms in zip(flat[::3], flat[1::3], flat[2::3], strict=True)
        ]
        (into / "redis.json").write_text(json.dumps(dumped, separators=(",", ":")))
        fields = dict(zip(applied[::2], applied[1::2], strict=True))
        return PartSnapshot(
            offsets={group: {f.decode(): int(v) + 1 for f, v in fields.items()}},
            topics={group: _detector_topics(settings)},
        )

    def restore(self, settings: Settings, staged: Path) -> None:
        if settings.state.backend == "redis":
            _restore_redis(settings, staged / "redis.json")
            return
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        for copy in sorted(staged.glob("*.lmdb")):
            _place(copy, settings.state_dir / copy.name)


def _detector_topics(settings: Settings) -> list[str]:
    return sorted([settings.topics.purchase_events.name, settings.topics.user_behavior.name])


def _lmdb_copy(source: Path, target: Path) -> dict[str, int]:
    """``env.copy`` of an environment (through the store's shared handle, since LMDB
    forbids a second open in one process); returns the applied offsets in the copy."""
    import lmdb

    from shopsentry.features.lmdb_store import _acquire, _release

    env = _acquire(source.resolve(), False)
    try:
        env.copy(str(target), compact=True)
    finally:
        _release(source.resolve())
    applied: dict[str, int] = {}
    copy = lmdb.open(str(target), readonly=True, lock=False, max_dbs=8)
    try:
        db = copy.open_db(b"applied", create=False)
        with copy.begin(db=db) as txn:
            for key, value in txn.cursor():
                topic, partition = bytes(key).decode().split("\x00")
                applied[tp_key(topic, int(partition))] = _APPLIED_OFFSET.unpack(bytes(value))[0]
    except lmdb.NotFoundError:
        pass
    finally:
        copy.close()
    return applied


def _restore_redis(settings: Settings, dump: Path) -> None:
    import redis

    client = redis.Redis.from_url(settings.state.redis_url.get_secret_value())
    prefix = f"shopsentry:{settings.detector.group_id}:"
    try:
        stale = list(client.scan_iter(match=prefix + "*", count=1000))
        pipe = client.pipeline(transaction=True)
        for key in stale:
            pipe.delete(key)
        for name, value, *expiry in json.loads(dump.read_text()):
            # Each key expires when it would have (entity states and their markers have
            # TTLs); one whose time passed while it was in the backup is not restored.
            # Backups made before expiries were kept have none: the key never expires.
            expires_at_ms = expiry[0] if expiry else 0
            if expires_at_ms and expires_at_ms <= time.time() * 1000:
                continue
            pipe.restore(
                name,
                expires_at_ms,
                base64.b64decode(value),
                replace=True,
                absttl=bool(expires_at_ms),
            )
        pipe.execute()
    finally:
        client.close()


def _run_history(settings: Settings) -> list[Path]:
    return [settings.state_dir / "dag-runs.sqlite"]


def _notifier_ledgers(settings: Settings) -> list[Path]:
    return sorted(settings.state_dir.glob("notifier-*.sqlite"))


PARTS: dict[str, BackupPart] = {}


def register_part(part: BackupPart) -> None:
    """Add a store to every backup from now on (its name must be new)."""
    if part.name in PARTS:
        raise ValueError(f"backup part {part.name!r} is already registered")
    PARTS[part.name] = part


register_part(WarehousePart())
register_part(
    SqlitePart("alerts", lambda s: [s.data_dir / "api" / "alerts.db"], _read_model_offsets)
)
register_part(SqlitePart("api_keys", lambda s: [s.data_dir / "api" / "keys.db"]))
register_part(RegistryPart())
register_part(StatePart())
register_part(SqlitePart("run_history", _run_history))
# What the notifier already delivered: restored, it keeps a replay from re-sending alerts.
register_part(SqlitePart("notifier_ledger", _notifier_ledgers))
