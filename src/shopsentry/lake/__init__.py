"""The lake: warm and cold tiers of compressed Parquet beside the warehouse.

    export_to_lake(settings)       partitions the hourly load touched → warm tier
    run_retention(settings)        hot → warm (verified) → cold
    attach_tiers(con, settings)    ``tiered_<table>`` views reading every tier

Layout and manifests: :mod:`shopsentry.lake.partitions`; storage URLs:
:mod:`shopsentry.lake.storage`. Why plain Hive-partitioned Parquet and not Iceberg:
``docs/lake.md``.
"""

from __future__ import annotations

from shopsentry.lake.export import ExportResult, export_to_lake
from shopsentry.lake.query import attach_tiers
from shopsentry.lake.retention import RetentionResult, run_retention
from shopsentry.lake.storage import FsspecStorage, LakeStorage, open_tier, tier_url

__all__ = [
    "ExportResult",
    "FsspecStorage",
    "LakeStorage",
    "RetentionResult",
    "attach_tiers",
    "export_to_lake",
    "open_tier",
    "run_retention",
    "tier_url",
]
