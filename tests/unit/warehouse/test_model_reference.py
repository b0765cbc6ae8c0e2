"""Training references copied from the version directories into raw.model_reference."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from shopsentry.config import Settings
from shopsentry.models.scorer import ModelFiles
from shopsentry.warehouse.model_reference import REFERENCE_TABLE, load_references, table_rows

REFERENCE = {
    "bins": 10,
    "rows": 100,
    "columns": [
        {"name": "amount", "kind": "feature", "edges": [10.0, 50.0], "shares": [0.2, 0.5, 0.3],
         "missing_share": 0.0, "rows": 100, "importance": 0.6, "rank": 1},
        {"name": "score", "kind": "score", "edges": [], "shares": [1.0], "missing_share": 0.0,
         "rows": 100, "importance": 0.0, "rank": None},
    ],
}  # fmt: skip


def test_bins_become_half_open_ranges_with_open_ends() -> None:
    rows = table_rows("3", REFERENCE)
    amount = [r for r in rows if r[2] == "amount"]
    assert [(r[3], r[4], r[5], r[6]) for r in amount] == [
        (0, None, 10.0, 0.2),
        (1, 10.0, 50.0, 0.5),
        (2, 50.0, None, 0.3),
    ]
    assert [r[:6] for r in rows if r[1] == "score"] == [("3", "score", "score", 0, None, None)]


def _version(settings: Settings, version: str, report: dict[str, object]) -> None:
    target = ModelFiles.from_settings(settings).directory / settings.model.name / f"v{version}"
    target.mkdir(parents=True)
    (target / "report.json").write_text(json.dumps(report))


def test_loading_replaces_the_table_with_every_version_that_has_a_reference(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _version(settings, "1", {"model": {}})  # trained before references existed
    _version(settings, "2", {"drift_reference": REFERENCE})
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema raw")
    assert load_references(ModelFiles.from_settings(settings), con) == 4
    assert load_references(ModelFiles.from_settings(settings), con) == 4  # replaced, not appended
    versions = con.execute(f"select distinct model_version from {REFERENCE_TABLE}").fetchall()
    assert versions == [("2",)]
    (
        ModelFiles.from_settings(settings).directory / settings.model.name / "v2" / "report.json"
    ).write_text("{not json")
    assert load_references(ModelFiles.from_settings(settings), con) == 0
    assert con.execute(f"select count(*) from {REFERENCE_TABLE}").fetchall() == [(0,)]
