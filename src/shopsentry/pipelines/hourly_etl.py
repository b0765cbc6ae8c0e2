"""hourly_etl: event log → RAW → dbt build of what changed → data-quality checks.

The design's Flow 2 (every hour). Three steps, each a function so the Airflow DAG can run
them as separate tasks with their own retries:

1. :func:`extract_load` drains the log (or loads a history directory, for a backfill)
   into RAW. Idempotent on event_id, resumes from the offsets DuckDB recorded.
   :func:`write_lake` then writes the partitions that load touched to the lake
   (compressed Parquet by event kind and date; see :mod:`shopsentry.lake`).
2. :func:`transform` runs ``dbt build`` without the ML models: every incremental model
   rebuilds only the keys (events, hours, days) touched by rows loaded since it last
   ran; tests run alongside, so a bad model stops what depends on it.
3. :func:`check_quality` checks source freshness and summarises the interval.

Rerunning the same hour loads nothing new, rebuilds nothing and reports the same
numbers; a failed step retried continues without duplicates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.pipelines.common import Interval, Progress, no_progress

if TYPE_CHECKING:
    from datetime import datetime

    from shopsentry.config import Settings
    from shopsentry.lake.export import ExportResult
    from shopsentry.warehouse.dbt import DbtRunResult
    from shopsentry.warehouse.loader import LoadResult

logger = logging.getLogger(__name__)

# The hourly build: everything but the ML training set (built weekly) and without the
# YAML unit tests (they test model logic, not data; CI runs them).
HOURLY_SELECTION = ["--exclude", "tag:ml", "--exclude-resource-type", "unit_test"]
# Sources the design expects to move every hour.
FRESHNESS_SOURCES = ["source:raw.purchase_events", "source:raw.user_behavior"]


@dataclass
class EtlResult:
    """What one hourly run did, for logs, XComs and the CLI."""

    interval: Interval
    records_read: int = 0
    rows_inserted: dict[str, int] = field(default_factory=dict)
    lake: dict[str, Any] = field(default_factory=dict)
    models_built: int = 0
    checks_passed: int = 0
    warnings: list[str] = field(default_factory=list)
    interval_summary: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval": str(self.interval),
            "records_read": self.records_read,
            "rows_inserted": dict(self.rows_inserted),
            "lake": dict(self.lake),
            "models_built": self.models_built,
            "checks_passed": self.checks_passed,
            "warnings": list(self.warnings),
            "interval_summary": dict(self.interval_summary),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def extract_load(
    settings: Settings,
    *,
    history: Path | None = None,
    progress: Progress = no_progress,
) -> LoadResult:
    """Step 1: RAW from the event log, or from ``history`` files for a backfill."""
    from shopsentry.warehouse.history import load_history
    from shopsentry.warehouse.loader import LoaderConfig, load_from_log

    if history is not None:
        return load_history(
            settings.warehouse_path, history, progress=lambda d, t: progress("load history", d, t)
        )
    return load_from_log(
        LoaderConfig.from_settings(settings), progress=lambda d, t: progress("load", d, t)
    )


def write_lake(settings: Settings) -> ExportResult:
    """Step 1b: the partitions loaded since the last export, to the lake's warm tier."""
    from shopsentry.lake.export import export_to_lake
    from shopsentry.lake.storage import LakeConfig

    return export_to_lake(LakeConfig.from_settings(settings))


def transform(
    settings: Settings,
    *,
    select: list[str] | None = None,
    as_of: datetime | None = None,
    progress: Progress = no_progress,
) -> DbtRunResult:
    """Step 2: ``dbt build`` of the incremental models and their tests (the monitoring
    models as of ``as_of``, default now)."""
    from shopsentry.models.scorer import ModelFiles
    from shopsentry.pipelines.model_monitoring import monitoring_vars
    from shopsentry.warehouse.db import connect
    from shopsentry.warehouse.dbt import DbtConfig, run_dbt
    from shopsentry.warehouse.loader import ensure_raw_schema
    from shopsentry.warehouse.model_reference import load_references

    # dbt's sources must exist even before the first load (a fresh warehouse); the
    # models' training references are copied in for the drift models.
    with connect(settings.warehouse_path) as con:
        ensure_raw_schema(con)
        load_references(ModelFiles.from_settings(settings), con)
    return run_dbt(
        DbtConfig.from_settings(settings),
        ["build", *(select or HOURLY_SELECTION), *monitoring_vars(settings, as_of)],
        on_node=lambda n, what: progress("dbt build", n, None),
    )


def check_quality(settings: Settings, interval: Interval) -> tuple[dict[str, Any], list[str]]:
    """Step 3: source freshness (an error fails the job, a warning is reported) and the
    interval's numbers, read from the analytics layer."""
    from shopsentry.warehouse.db import DataQualityFailed
    from shopsentry.warehouse.dbt import DbtConfig, run_dbt

    warnings: list[str] = []
    freshness = run_dbt(
        DbtConfig.from_settings(settings),
        ["source", "freshness", "--select", *FRESHNESS_SOURCES],
        fail_on_tests=False,
    )
    stale = [n for n in freshness.nodes if n.status in {"error", "runtime error"}]
    if stale:
        empty = _empty_sources(settings, [n.unique_id for n in stale])
        # A source that never received a row is a new deployment, not a stalled feed.
        warnings += [f"{uid} has no rows yet" for uid in empty]
        stale = [n for n in stale if n.unique_id not in empty]
    if stale:
        raise DataQualityFailed(
            [f"{n.unique_id} is stale ({n.status})" for n in stale],
            hint="no new events reached the warehouse within the freshness limit: "
            "check the producers and `shopsentry topics lag`",
        )
    warnings += [f"{n.unique_id} freshness warning" for n in freshness.nodes if n.status == "warn"]
    return interval_summary(settings, interval), warnings


def _empty_sources(settings: Settings, unique_ids: list[str]) -> set[str]:
    """Which of these dbt source ids (``source.shopsentry.raw.<table>``) have no rows."""
    from shopsentry.warehouse.db import connect
    from shopsentry.warehouse.loader import RAW_BY_NAME

    empty: set[str] = set()
    with connect(settings.warehouse_path, read_only=True) as con:
        for uid in unique_ids:
            table = RAW_BY_NAME.get(uid.rsplit(".", 1)[-1])
            if table is None:
                continue
            if con.execute(f"select count(*) from {table.qualified}").fetchall()[0][0] == 0:
                empty.add(uid)
    return empty


def interval_summary(settings: Settings, interval: Interval) -> dict[str, Any]:
    """Orders, revenue, alerts and quarantined rows whose event time is in ``interval``."""
    from shopsentry.warehouse.db import connect

    with connect(settings.warehouse_path, read_only=True) as con:
        orders = con.execute(
            """select count(*), coalesce(sum(amount), 0),
                      coalesce(sum(case when is_alerted then 1 else 0 end), 0)
               from analytics.fct_orders where occurred_at >= ? and occurred_at < ?""",
            [interval.start_naive, interval.end_naive],
        ).fetchall()[0]
        behavior = con.execute(
            """select count(*) from staging.stg_behavior_events
               where occurred_at >= ? and occurred_at < ?""",
            [interval.start_naive, interval.end_naive],
        ).fetchall()[0]
        quarantined = con.execute("select count(*) from staging.stg_quarantine").fetchall()[0]
    return {
        "orders": int(orders[0]),
        "revenue": float(orders[1]),
        "alerts": int(orders[2]),
        "behavior_events": int(behavior[0]),
        "quarantined_total": int(quarantined[0]),
    }


def hourly_etl(
    settings: Settings,
    interval: Interval | None = None,
    *,
    history: Path | None = None,
    progress: Progress = no_progress,
) -> EtlResult:
    """Run the three steps for ``interval`` (default: the last complete hour)."""
    interval = interval or Interval.previous_hour()
    result = EtlResult(interval=interval)
    started = time.perf_counter()
    loaded = extract_load(settings, history=history, progress=progress)
    result.records_read = loaded.records_read
    result.rows_inserted = dict(loaded.inserted)
    result.seconds["load"] = time.perf_counter() - started

    mark = time.perf_counter()
    progress("lake", 0, 1)
    result.lake = write_lake(settings).as_dict()
    progress("lake", 1, 1)
    result.seconds["lake"] = time.perf_counter() - mark

    mark = time.perf_counter()
    built = transform(settings, progress=progress)
    result.models_built = built.models_built
    result.checks_passed = built.tests_passed
    result.warnings += [f"{n.unique_id}: {n.message}" for n in built.by_status("warn")]
    result.seconds["transform"] = time.perf_counter() - mark

    mark = time.perf_counter()
    progress("quality checks", 0, 1)
    summary, warnings = check_quality(settings, interval)
    result.interval_summary = summary
    result.warnings += warnings
    progress("quality checks", 1, 1)
    result.seconds["quality"] = time.perf_counter() - mark
    result.seconds["total"] = time.perf_counter() - started
    logger.info(
        "hourly_etl %s: %d records read, %d rows inserted, %d models, %d checks in %.1fs",
        interval,
        result.records_read,
        sum(result.rows_inserted.values()),
        result.models_built,
        result.checks_passed,
        result.seconds["total"],
    )
    return result
