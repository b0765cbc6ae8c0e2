"""Copy every registered model's training reference into ``raw.model_reference``.

The reference (``shopsentry.models.drift_reference``) is saved in each version's
``report.json`` when the model is registered; dbt cannot read it from there, so the
batch path copies it into the RAW layer before every ``dbt build`` (one row per model
version, column and bin). The table is replaced as a whole: it is small (about a
thousand rows a version) and the version directories are its source of truth.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from shopsentry.models.scorer import ModelFiles

logger = logging.getLogger(__name__)

REFERENCE_TABLE = "raw.model_reference"
_COLUMNS = (
    ("model_version", "varchar not null"),
    ("kind", "varchar not null"),
    ("feature", "varchar not null"),
    ("bin", "integer not null"),
    ("lower_edge", "double"),
    ("upper_edge", "double"),
    ("expected_share", "double not null"),
    ("missing_share", "double not null"),
    ("importance", "double"),
    ("importance_rank", "integer"),
    ("reference_rows", "bigint not null"),
    ("_loaded_at", "timestamp not null"),
)


def _reports(files: ModelFiles) -> list[tuple[str, Path]]:
    root = files.directory / files.name
    found = []
    for path in sorted(root.glob("v*/report.json")) if root.is_dir() else []:
        version = path.parent.name.removeprefix("v")
        if version.isdigit():
            found.append((version, path))
    return found


def table_rows(version: str, reference: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The table's rows (without ``_loaded_at``) for one version's reference."""
    rows: list[tuple[Any, ...]] = []
    for column in reference.get("columns", []):
        edges: list[float] = column["edges"]
        bounds = [None, *edges, None]
        for i, share in enumerate(column["shares"]):
            rows.append(
                (
                    version,
                    column["kind"],
                    column["name"],
                    i,
                    bounds[i],
                    bounds[i + 1],
                    float(share),
                    float(column["missing_share"]),
                    float(column.get("importance") or 0.0),
                    column.get("rank"),
                    int(column["rows"]),
                )
            )
    return rows


def ensure_reference_table(con: duckdb.DuckDBPyConnection) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
    con.execute(f"create table if not exists {REFERENCE_TABLE} ({columns})")


def load_references(files: ModelFiles, con: duckdb.DuckDBPyConnection) -> int:
    """Replace ``raw.model_reference`` with the reference of every version kept in
    ``files``; returns rows."""
    from datetime import UTC, datetime

    import pyarrow as pa

    ensure_reference_table(con)
    rows: list[tuple[Any, ...]] = []
    for version, path in _reports(files):
        try:
            reference = json.loads(path.read_text()).get("drift_reference")
        except (OSError, ValueError) as exc:
            logger.warning("skipping the reference of v%s (%s): %s", version, path, exc)
            continue
        if reference:
            rows.extend(table_rows(version, reference))
    now = datetime.now(UTC).replace(tzinfo=None)
    names = [name for name, _ in _COLUMNS]
    con.execute("begin")
    try:
        con.execute(f"delete from {REFERENCE_TABLE}")
        if rows:
            columns = {name: [r[i] for r in rows] for i, name in enumerate(names[:-1])}
            table = pa.table({**columns, "_loaded_at": [now] * len(rows)})
            con.register("_model_reference", table)
            con.execute(f"insert into {REFERENCE_TABLE} select * from _model_reference")
            con.unregister("_model_reference")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    logger.info("model references: %d rows from %d version(s)", len(rows), len(_reports(files)))
    return len(rows)
