"""How the dbt runner finds the project and hands settings to profiles.yml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopsentry.warehouse import dbt as runner
from shopsentry.warehouse.db import DataQualityFailed, DbtFailed
from tests.conftest import REPO


def test_project_dir_is_the_repo_warehouse_or_the_override(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(runner.PROJECT_ENV, raising=False)
    assert runner.project_dir() == Path(REPO) / "warehouse"
    monkeypatch.setenv(runner.PROJECT_ENV, str(tmp_path))
    assert runner.project_dir() == tmp_path.resolve()


def test_profiles_see_the_settings_only_during_the_invocation(settings, monkeypatch) -> None:
    monkeypatch.setenv("SHOPSENTRY_DBT_TARGET", "previous")
    monkeypatch.delenv("SHOPSENTRY_WAREHOUSE_PATH", raising=False)
    with runner._dbt_environment(runner.DbtConfig.from_settings(settings)):
        assert os.environ["SHOPSENTRY_WAREHOUSE_PATH"] == str(settings.warehouse_path.resolve())
        assert os.environ["SHOPSENTRY_DBT_TARGET"] == "duckdb"
    assert os.environ["SHOPSENTRY_DBT_TARGET"] == "previous"
    assert "SHOPSENTRY_WAREHOUSE_PATH" not in os.environ


def test_profiles_yml_reads_the_warehouse_path_from_the_environment() -> None:
    profiles = (Path(REPO) / "warehouse" / "profiles.yml").read_text()
    assert "env_var('SHOPSENTRY_WAREHOUSE_PATH'" in profiles
    assert "type: duckdb" in profiles and "type: snowflake" in profiles


def test_quality_failures_name_the_checks() -> None:
    failure = DataQualityFailed([f"test.shopsentry.t{i} (1 failing row(s))" for i in range(7)])
    assert failure.message.startswith("7 data-quality check(s) failed: test.shopsentry.t0")
    assert "and 2 more" in failure.message
    assert not failure.retryable
    assert isinstance(DbtFailed("x"), Exception)


def test_a_project_that_does_not_compile_is_a_dbt_failure(
    settings, tmp_path: Path, monkeypatch
) -> None:
    project = tmp_path / "broken"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: broken\nversion: '1.0'\nprofile: shopsentry\nmodel-paths: [models]\n"
    )
    (project / "profiles.yml").write_text((Path(REPO) / "warehouse" / "profiles.yml").read_text())
    (project / "models" / "bad.sql").write_text("select {{ this_macro_does_not_exist() }}")
    monkeypatch.setenv(runner.PROJECT_ENV, str(project))
    with pytest.raises(DbtFailed) as failed:
        runner.run_dbt(runner.DbtConfig.from_settings(settings), ["build"])
    assert "dbt build" in failed.value.message
