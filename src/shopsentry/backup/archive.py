"""Backups as a set of archives under the backup URL, published by a manifest.

    <backup url>/<id>/<part>.tar.gz      one per part that had something to copy
    <backup url>/<id>/manifest.json      written last: a backup without it is partial

The manifest lists every archive with its size and SHA-256, the log offsets each part's
copy reflects, the log's end offsets when the backup began (what the log held), and a
checksum of itself. :func:`verify_backup` checks all of that; :func:`restore_backup`
verifies first and refuses a backup with any problem, restores every registered part
from that one backup only (a part the backup lacks is moved aside, never kept from
another time), then points every consumer group at the offsets recorded, so consumers
replay the log from exactly where the restored stores stand. The purchases decided since
the backup keep the decision the log holds (:mod:`shopsentry.backup.replay`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.backup.parts import PARTS, BackupPart, GroupOffsets
from shopsentry.backup.replay import Ledger, decided_since, purchase_ends, write_ledger
from shopsentry.errors import TerminalError
from shopsentry.lake.storage import LakeConfig, LakeStorage, open_tier, sha256_file

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
RESTORED_MARKER = "restored.json"
IN_PROGRESS_MARKER = ".restore-in-progress"


class BackupNotFound(TerminalError):
    def __init__(self, backup_id: str | None) -> None:
        what = f"backup {backup_id!r}" if backup_id else "complete backup"
        super().__init__(f"no {what} found", hint="see `shopsentry backup list`")


class BackupInvalid(TerminalError):
    """A backup failed verification: it is never restored, not even in part."""

    def __init__(self, backup_id: str, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"backup {backup_id} is corrupt or partial: {problems[0]}{more}; nothing was restored",
            hint="restore an older backup (`shopsentry backup list`)",
        )
        self.backup_id = backup_id
        self.problems = problems


@dataclass
class PartEntry:
    archive: str
    bytes: int
    sha256: str
    offsets: GroupOffsets = field(default_factory=dict)
    topics: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class BackupManifest:
    id: str
    taken_at: str
    seconds: float
    parts: dict[str, PartEntry]
    log_end_offsets: dict[str, int]  # "topic:partition" → end offset at the start
    version: int = FORMAT_VERSION
    checksum: str = ""

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("checksum")
        return data

    def compute_checksum(self) -> str:
        return hashlib.sha256(json.dumps(self.body(), sort_keys=True).encode()).hexdigest()

    def to_json(self) -> bytes:
        self.checksum = self.compute_checksum()
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BackupManifest:
        raw = json.loads(data)
        raw["parts"] = {k: PartEntry(**v) for k, v in raw["parts"].items()}
        return cls(**raw)


@dataclass
class BackupInfo:
    id: str
    complete: bool
    taken_at: str | None
    bytes: int
    parts: list[str]


def _new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _log_end_offsets(settings: Settings) -> dict[str, int]:
    from shopsentry.bus import BusConfig, open_log

    ends: dict[str, int] = {}
    log = open_log(BusConfig.from_settings(settings))
    try:
        for topic in log.list_topics():
            for p in log.describe_topic(topic).partitions:
                ends[f"{topic}:{p.partition}"] = p.end_offset
    finally:
        log.close()
    return ends


def create_backup(settings: Settings, parts: dict[str, BackupPart] | None = None) -> BackupManifest:
    """Copy every part, upload the archives, publish the manifest, prune old backups."""
    started = time.perf_counter()
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    backup_id = _new_id()
    ends = _log_end_offsets(settings)
    entries: dict[str, PartEntry] = {}
    with tempfile.TemporaryDirectory(prefix="shopsentry-backup-") as tmp:
        work = Path(tmp)
        for name, part in (parts or PARTS).items():
            snap = part.snapshot(settings, work / name)
            if snap is None:
                continue
            archive = work / f"{name}.tar.gz"
            with tarfile.open(archive, "w:gz", compresslevel=3) as tar:
                if (work / name).exists():
                    tar.add(work / name, arcname=name)
            key = f"{backup_id}/{name}.tar.gz"
            entries[name] = PartEntry(
                archive=key,
                bytes=archive.stat().st_size,
                sha256=sha256_file(archive),
                offsets=snap.offsets,
                topics=snap.topics,
                notes=snap.notes,
            )
            storage.put_file(archive, key)
    manifest = BackupManifest(
        id=backup_id,
        taken_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        seconds=round(time.perf_counter() - started, 3),
        parts=entries,
        log_end_offsets=ends,
    )
    storage.put_bytes(f"{backup_id}/{MANIFEST}", manifest.to_json())
    prune_backups(settings, settings.lake.backups_kept)
    logger.info("backup %s: %d parts in %.2fs", backup_id, len(entries), manifest.seconds)
    return manifest


def list_backups(settings: Settings) -> list[BackupInfo]:
    """Every backup under the URL, newest first, complete or not."""
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    by_id: dict[str, list[str]] = {}
    for key in storage.list():
        backup_id, _, rest = key.partition("/")
        by_id.setdefault(backup_id, []).append(rest)
    found = []
    for backup_id, names in sorted(by_id.items(), reverse=True):
        complete = MANIFEST in names
        taken_at = None
        if complete:
            try:
                taken_at = _read_manifest(storage, backup_id).taken_at
            except (ValueError, KeyError, TypeError):
                complete = False
        found.append(
            BackupInfo(
                id=backup_id,
                complete=complete,
                taken_at=taken_at,
                bytes=sum(storage.size(f"{backup_id}/{n}") for n in names),
                parts=sorted(n.removesuffix(".tar.gz") for n in names if n != MANIFEST),
            )
        )
    return found


def _read_manifest(storage: LakeStorage, backup_id: str) -> BackupManifest:
    return BackupManifest.from_json(storage.get_bytes(f"{backup_id}/{MANIFEST}"))


def verify_backup(settings: Settings, backup_id: str | None = None) -> tuple[str, list[str]]:
    """(the backup's id, its problems): none means every archive is there, whole and
    matching its checksum, and the manifest is intact."""
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    backup_id = backup_id or _latest(settings)
    if not any(k.startswith(f"{backup_id}/") for k in storage.list(backup_id)):
        raise BackupNotFound(backup_id)
    if not storage.exists(f"{backup_id}/{MANIFEST}"):
        return backup_id, ["no manifest (the backup never finished)"]
    try:
        manifest = _read_manifest(storage, backup_id)
    except (ValueError, KeyError, TypeError) as exc:
        return backup_id, [f"manifest unreadable ({exc})"]
    if manifest.checksum != manifest.compute_checksum() or manifest.id != backup_id:
        return backup_id, ["manifest does not match its checksum"]
    problems = []
    for name, entry in manifest.parts.items():
        if not storage.exists(entry.archive):
            problems.append(f"part {name}: {entry.archive} is missing")
        elif storage.size(entry.archive) != entry.bytes:
            problems.append(
                f"part {name}: {storage.size(entry.archive)} bytes, manifest says {entry.bytes}"
            )
        elif storage.sha256(entry.archive) != entry.sha256:
            problems.append(f"part {name}: checksum mismatch")
    return backup_id, problems


def _latest(settings: Settings) -> str:
    for info in list_backups(settings):
        if info.complete:
            return info.id
    raise BackupNotFound(None)


def prune_backups(settings: Settings, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest complete backups, and partial ones older than
    the newest complete (a partial newer than it may still be being written)."""
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    infos = list_backups(settings)
    complete = [i.id for i in infos if i.complete]
    doomed = complete[keep:]
    if complete:
        doomed += [i.id for i in infos if not i.complete and i.id < complete[0]]
    for backup_id in doomed:
        storage.delete(storage.list(backup_id))
    return doomed


@dataclass
class RestoreResult:
    id: str
    taken_at: str
    parts: list[str]
    offsets: GroupOffsets
    seconds: float
    decisions_kept: int = 0  # purchases decided since the backup: replayed, not re-decided

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_backup(settings: Settings, backup_id: str | None = None) -> RestoreResult:
    """Restore every part from one verified backup, then rewind the consumer groups.

    Consumers of this data dir must be stopped (the runbook says so): the groups'
    offsets can only be set while no member holds their partitions."""
    started = time.perf_counter()
    storage = open_tier(LakeConfig.from_settings(settings), "backups")
    backup_id, problems = verify_backup(settings, backup_id)
    if problems:
        raise BackupInvalid(backup_id, problems)
    manifest = _read_manifest(storage, backup_id)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".restore-{backup_id}-", dir=data_dir))
    try:
        staged = _download(storage, manifest, staging)
        marker = data_dir / IN_PROGRESS_MARKER
        marker.write_text(backup_id)
        aside = data_dir / f".pre-restore-{backup_id}"
        for name, part in PARTS.items():
            _move_aside(settings, part, aside / name)
            if name in staged:
                part.restore(settings, staged[name])
        offsets: GroupOffsets = {}
        for entry in manifest.parts.values():
            offsets.update(entry.offsets)
        ledger = Ledger(decided_since(settings, manifest.log_end_offsets), purchase_ends(settings))
        kept = write_ledger(settings, ledger)
        _rewind_groups(settings, manifest)
        (data_dir / RESTORED_MARKER).write_text(
            json.dumps(
                {
                    "id": backup_id,
                    "taken_at": manifest.taken_at,
                    "offsets": offsets,
                    "decisions_kept": kept,
                },
                indent=1,
            )
        )
        marker.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = RestoreResult(
        id=backup_id,
        taken_at=manifest.taken_at,
        parts=sorted(manifest.parts),
        offsets=offsets,
        seconds=round(time.perf_counter() - started, 3),
        decisions_kept=kept,
    )
    logger.info("restored backup %s (%s) in %.2fs", backup_id, result.parts, result.seconds)
    return result


def _download(storage: LakeStorage, manifest: BackupManifest, staging: Path) -> dict[str, Path]:
    """Fetch and check every archive before anything live is touched."""
    staged: dict[str, Path] = {}
    for name, entry in manifest.parts.items():
        local = staging / f"{name}.tar.gz"
        storage.get_file(entry.archive, local)
        if sha256_file(local) != entry.sha256:
            raise BackupInvalid(manifest.id, [f"part {name} changed while it was downloaded"])
        with tarfile.open(local, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        local.unlink()
        staged[name] = staging / name
        staged[name].mkdir(exist_ok=True)
    return staged


def _move_aside(settings: Settings, part: BackupPart, aside: Path) -> None:
    for live in part.live_paths(settings):
        if live.exists():
            aside.mkdir(parents=True, exist_ok=True)
            target = aside / live.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            shutil.move(str(live), str(target))


def _rewind_groups(settings: Settings, manifest: BackupManifest) -> None:
    from shopsentry.backup.offsets import set_group_offsets

    for entry in manifest.parts.values():
        for group, offsets in entry.offsets.items():
            set_group_offsets(settings, group, entry.topics.get(group, []), offsets)
