"""The lake: warm and cold tiers of compressed Parquet beside the warehouse.

    export_to_lake(config)         partitions the hourly load touched → warm tier
    run_retention(config)          hot → warm (verified) → cold
    attach_tiers(con, config)      ``tiered_<table>`` views reading every tier

Layout and manifests: :mod:`shopsentry.lake.partitions`; storage URLs:
:mod:`shopsentry.lake.storage`. Why plain Hive-partitioned Parquet and not Iceberg:
``docs/lake.md``.
"""

from __future__ import annotations

from shopsentry.lake.export import ExportResult, export_to_lake
from shopsentry.lake.query import attach_tiers
from shopsentry.lake.retention import RetentionResult, run_retention
from shopsentry.lake.storage import FsspecStorage, LakeConfig, LakeStorage, open_tier, tier_url

__all__ = [
    "ExportResult",
    "FsspecStorage",
    "LakeConfig",
    "LakeStorage",
    "RetentionResult",
    "attach_tiers",
    "export_to_lake",
    "open_tier",
    "run_retention",
    "tier_url",
]
