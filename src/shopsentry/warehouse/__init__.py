"""The warehouse (seed: Snowflake; embedded default: DuckDB): RAW loader, dbt runner and
read-only queries.

    load_from_log(settings) / load_history(settings, path)   → raw.* tables
    run_dbt(settings, ["build", ...])                        → staging, analytics, ml_features
    queries.daily_sales(settings, start=..., end=...)        → rows for the API and reports
"""

from __future__ import annotations

from shopsentry.warehouse.db import (
    DataQualityFailed,
    DbtFailed,
    WarehouseBusy,
    WarehouseError,
    WarehouseMissing,
    connect,
)
from shopsentry.warehouse.dbt import DbtRunResult, run_dbt
from shopsentry.warehouse.history import load_history
from shopsentry.warehouse.loader import LoadResult, ensure_raw_schema, load_from_log

__all__ = [
    "DataQualityFailed",
    "DbtFailed",
    "DbtRunResult",
    "LoadResult",
    "WarehouseBusy",
    "WarehouseError",
    "WarehouseMissing",
    "connect",
    "ensure_raw_schema",
    "load_from_log",
    "load_history",
    "run_dbt",
]
