"""DAG task bodies fail at once on a terminal error and are retried on a transient one."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime

import pytest

from shopsentry.errors import ConfigError
from shopsentry.pipelines.orchestration import day_before, retry_by_error
from shopsentry.warehouse.db import DataQualityFailed, DbtFailed, WarehouseBusy

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="shopsentry-airflow-unit-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
airflow_exceptions = pytest.importorskip("airflow.sdk.exceptions")


def failing(error: BaseException):  # type: ignore[no-untyped-def]
    @retry_by_error
    def body() -> None:
        raise error

    return body


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("bad setting"),
        DbtFailed("dbt run failed"),
        DataQualityFailed(["not_null_purchases_event_id"]),
    ],
)
def test_a_terminal_error_fails_the_task_without_retrying(error: Exception) -> None:
    with pytest.raises(airflow_exceptions.AirflowFailException) as info:
        failing(error)()
    assert info.value.__cause__ is error
    assert type(error).__name__ in str(info.value)


def test_a_transient_error_is_raised_as_it_is_so_retries_apply(tmp_path) -> None:  # type: ignore[no-untyped-def]
    busy = WarehouseBusy(tmp_path / "w.duckdb")
    with pytest.raises(WarehouseBusy):
        failing(busy)()


def test_the_body_keeps_its_name_and_result() -> None:
    @retry_by_error
    def extract_load(n: int) -> int:
        return n + 1

    assert extract_load(1) == 2 and extract_load.__name__ == "extract_load"


def test_day_before_is_the_day_a_daily_run_reports_on() -> None:
    run = datetime(2026, 11, 21, 6, tzinfo=UTC)
    assert day_before({"data_interval_end": run}) == date(2026, 11, 20)
    assert day_before({"logical_date": datetime(2026, 12, 1, 0, 30, tzinfo=UTC)}) == date(
        2026, 11, 30
    )
