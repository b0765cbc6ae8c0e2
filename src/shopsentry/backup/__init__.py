"""Backups of everything the event log cannot rebuild, and restores that replay the rest.

    create_backup(settings)            copy every part, publish a manifest, keep N
    list_backups(settings)             newest first, complete or partial
    verify_backup(settings, id)        (id, problems): archives present, sizes, SHA-256
    restore_backup(settings, id)       verified, one backup only, consumer groups rewound

The parts (warehouse, alert read model, API keys, model registry, feature state, run
history, notifier ledger) are registered in :mod:`shopsentry.backup.parts`; the
procedure around them is in ``docs/runbook.md``.
"""

from __future__ import annotations

from shopsentry.backup.archive import (
    BackupInfo,
    BackupInvalid,
    BackupManifest,
    BackupNotFound,
    RestoreResult,
    create_backup,
    list_backups,
    prune_backups,
    restore_backup,
    verify_backup,
)
from shopsentry.backup.parts import PARTS, BackupPart, SqlitePart, register_part

__all__ = [
    "PARTS",
    "BackupInfo",
    "BackupInvalid",
    "BackupManifest",
    "BackupNotFound",
    "BackupPart",
    "RestoreResult",
    "SqlitePart",
    "create_backup",
    "list_backups",
    "prune_backups",
    "register_part",
    "restore_backup",
    "verify_backup",
]
