"""The warehouse (the design's Snowflake; embedded default: DuckDB): RAW loader, dbt runner
and read-only queries.

    load_from_log(LoaderConfig.from_settings(settings))        → raw.* tables from the log
    load_history(settings.warehouse_path, path)                → raw.* tables from files
    run_dbt(DbtConfig.from_settings(settings), ["build", ...]) → staging, analytics, ml_features
    queries.daily_sales(settings.warehouse_path, start=..., end=...) → rows for the API, reports

Each function takes the narrow config it needs (a path, a small frozen dataclass built
from :class:`~shopsentry.config.Settings` by the caller), never the whole settings.

The names below are imported on first use (PEP 562), so a command that only needs a
submodule's constants does not pay for pyarrow and DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shopsentry.warehouse.db import (
        DataQualityFailed,
        DbtFailed,
        WarehouseBusy,
        WarehouseError,
        WarehouseMissing,
        connect,
    )
    from shopsentry.warehouse.dbt import DbtConfig, DbtRunResult, run_dbt
    from shopsentry.warehouse.history import load_history
    from shopsentry.warehouse.loader import (
        LoaderConfig,
        LoadResult,
        ensure_raw_schema,
        load_from_log,
    )

_WHERE = {
    "DataQualityFailed": "db",
    "DbtFailed": "db",
    "WarehouseBusy": "db",
    "WarehouseError": "db",
    "WarehouseMissing": "db",
    "connect": "db",
    "DbtRunResult": "dbt",
    "run_dbt": "dbt",
    "DbtConfig": "dbt",
    "load_history": "history",
    "LoadResult": "loader",
    "LoaderConfig": "loader",
    "ensure_raw_schema": "loader",
    "load_from_log": "loader",
}

__all__ = [
    "DataQualityFailed",
    "DbtConfig",
    "DbtFailed",
    "DbtRunResult",
    "LoadResult",
    "LoaderConfig",
    "WarehouseBusy",
    "WarehouseError",
    "WarehouseMissing",
    "connect",
    "ensure_raw_schema",
    "load_from_log",
    "load_history",
    "run_dbt",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
