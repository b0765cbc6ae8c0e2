"""retention: the daily storage-tier pass (see :mod:`shopsentry.lake.retention`).

RAW partitions older than ``lake.hot_days`` leave the warehouse once the lake is shown
to hold them; warm partitions older than ``lake.warm_days`` move to the cold URL.
Idempotent: a second pass on the same day finds nothing to move.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from shopsentry.pipelines.common import Progress, no_progress

if TYPE_CHECKING:
    from shopsentry.config import Settings
    from shopsentry.lake.retention import RetentionResult


def retention(
    settings: Settings, today: date | None = None, *, progress: Progress = no_progress
) -> RetentionResult:
    """Run one retention pass as of ``today`` (default: the current UTC day)."""
    from shopsentry.lake.retention import run_retention
    from shopsentry.lake.storage import LakeConfig

    progress("retention", 0, 1)
    result = run_retention(LakeConfig.from_settings(settings), today)
    progress("retention", 1, 1)
    return result
