"""Intervals, date parsing, the Airflow-context helpers and the SLA callback."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from shopsentry.errors import ConfigError
from shopsentry.pipelines.common import Interval, parse_day, parse_instant
from shopsentry.pipelines.orchestration import DEFAULT_ARGS, hour_before, run_instant
from shopsentry.pipelines.sla import SLA, deadline_missed


def test_intervals_are_half_open_utc_hours_and_days() -> None:
    at = datetime(2026, 11, 24, 13, 42, 7, tzinfo=UTC)
    hour = Interval.hour_of(at)
    assert (hour.start, hour.end) == (
        datetime(2026, 11, 24, 13, tzinfo=UTC),
        datetime(2026, 11, 24, 14, tzinfo=UTC),
    )
    assert Interval.previous_hour(at) == Interval.hour_of(at - timedelta(hours=1))
    day = Interval.day(date(2026, 11, 24))
    assert day.end - day.start == timedelta(days=1)
    assert day.start_naive == datetime(2026, 11, 24)
    with pytest.raises(ConfigError):
        Interval(hour.end, hour.start)
    with pytest.raises(ConfigError):
        Interval(datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_parsing_dates_and_instants() -> None:
    assert parse_day("2026-11-24") == date(2026, 11, 24)
    assert parse_instant("2026-11-24T13") == datetime(2026, 11, 24, 13, tzinfo=UTC)
    assert parse_instant("2026-11-24T15:00+02:00") == datetime(2026, 11, 24, 13, tzinfo=UTC)
    with pytest.raises(ConfigError, match="bad date") as bad:
        parse_day("24/11/2026")
    assert "YYYY-MM-DD" in (bad.value.hint or "")
    with pytest.raises(ConfigError):
        parse_instant("yesterday")


def test_run_instant_prefers_the_data_interval_then_logical_date_then_run_after() -> None:
    end = datetime(2026, 11, 24, 14, tzinfo=UTC)
    assert run_instant({"data_interval_end": end, "logical_date": end - timedelta(hours=5)}) == end
    assert run_instant({"data_interval_end": None, "logical_date": end}) == end
    manual = {"logical_date": None, "dag_run": SimpleNamespace(run_after=end)}
    assert run_instant(manual) == end
    assert hour_before({"logical_date": end + timedelta(minutes=3)}) == Interval(
        end - timedelta(hours=1), end
    )


def test_seed_default_args() -> None:
    assert {
        "owner": "data-engineering",
        "depends_on_past": False,
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=2),
    } == DEFAULT_ARGS
    assert timedelta(hours=1) == SLA


def test_deadline_callback_logs_the_missed_sla(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="shopsentry.pipelines.sla"):
        asyncio.run(
            deadline_missed(
                context={"dag_run": {"dag_id": "x"}}, dag_id="hourly_etl", sla="1:00:00"
            )
        )
    assert "SLA missed: DAG hourly_etl" in caplog.text


def test_dag_callbacks_count_runs_for_the_metrics(settings, monkeypatch) -> None:
    from shopsentry.monitoring.metrics import dag_run_counts, dag_runs_path
    from shopsentry.pipelines import orchestration

    monkeypatch.setattr(orchestration, "settings_from_env", lambda: settings)
    run = SimpleNamespace(dag_id="hourly_etl")
    orchestration.on_dag_success({"dag_run": run})
    orchestration.on_dag_success({"dag_run": run})
    orchestration.on_dag_failure({"dag_run": run})
    assert dag_run_counts(dag_runs_path(settings.state_dir)) == {
        ("hourly_etl", "success"): 2,
        ("hourly_etl", "failed"): 1,
    }
