"""Read RAW across tiers: the warehouse's rows plus the lake's rows it no longer holds.

:func:`attach_tiers` adds one temporary view per RAW table, ``tiered_<table>``, to a
DuckDB connection (read-only is fine): the warehouse's rows, and the warm and cold
tiers' rows whose key the warehouse does not have. A query over any date range then
answers whatever tier each day sits in; a filter on ``occurred_at`` prunes the lake's
day partitions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shopsentry.lake.export import COLUMNS, sql_literal
from shopsentry.lake.storage import open_tier
from shopsentry.warehouse.loader import RAW_TABLES

if TYPE_CHECKING:
    import duckdb

    from shopsentry.lake.storage import LakeConfig


def attach_tiers(con: duckdb.DuckDBPyConnection, config: LakeConfig) -> list[str]:
    """Create ``tiered_<table>`` views on ``con``; returns their names."""
    names = []
    tiers = [open_tier(config, "warm"), open_tier(config, "cold")]
    for table in RAW_TABLES:
        globs = []
        for storage in tiers:
            if any(k.endswith(".parquet") for k in storage.list(table.name)):
                storage.register(con)
                globs.append(sql_literal(storage.duckdb_path(f"{table.name}/*/*.parquet")))
        name = f"tiered_{table.name}"
        sql = f"select {COLUMNS} from {table.qualified}"
        if globs:
            sql += (
                f" union all select {COLUMNS} from read_parquet([{', '.join(globs)}],"
                " hive_partitioning = true, union_by_name = true) as l"
                f" anti join {table.qualified} as w on w._dedupe_key = l._dedupe_key"
            )
        con.execute(f"create or replace temp view {name} as {sql}")
        names.append(name)
    return names
