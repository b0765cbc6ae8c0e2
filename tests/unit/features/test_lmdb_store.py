"""The LMDB state store's outbox."""

from __future__ import annotations

from pathlib import Path

from shopsentry.features.lmdb_store import LmdbStateStore

from .state_contract import check_outbox


def test_outbox_points_partitions_at_their_last_batch(tmp_path: Path) -> None:
    store = LmdbStateStore(tmp_path / "s.lmdb")
    try:
        check_outbox(store)
    finally:
        store.close()
