"""What the Airflow DAGs in ``dags/`` share, so each DAG file stays a thin shell.

The design's ``default_args`` (owner data-engineering, no depends_on_past, 3 retries 5
minutes apart, 2-hour execution timeout) and its 1-hour SLA, expressed as an Airflow 3
deadline alert (Airflow 3 removed ``sla``). Task bodies call :mod:`shopsentry.pipelines`
with Settings read from the environment at run time, never at parse time, so the DAG
processor parses these files fast and without touching the warehouse.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from shopsentry.errors import ShopsentryError, is_retryable
from shopsentry.pipelines.common import Interval
from shopsentry.pipelines.sla import SLA

if TYPE_CHECKING:
    from airflow.sdk.definitions.deadline import DeadlineAlert

    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

# A fixed start in the past; catchup=False means only the latest interval runs.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-engineering",
    "depends_on_past": False,
    "retries": 3,
    "retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(hours=2),
}


P = ParamSpec("P")
R = TypeVar("R")


def retry_by_error(fn: Callable[P, R]) -> Callable[P, R]:
    """A task body whose failures Airflow retries only when retrying can help.

    A terminal ShopsentryError (bad config, a dbt model error, a failed quality check:
    ``retryable`` False) becomes Airflow's ``AirflowFailException``, which fails the task
    at once whatever retries are left; a transient one (a busy warehouse, a broker away)
    is raised as it is, so ``default_args``' retries apply. Put it under ``@task``."""

    @functools.wraps(fn)
    def body(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ShopsentryError as exc:
            if is_retryable(exc):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc.one_line()}") from exc

    body.retry_by_error = True  # type: ignore[attr-defined]
    return body


def sla_deadline(dag_id: str) -> DeadlineAlert:
    """Alert when a run is still going one hour after it was queued (the design's SLA)."""
    # airflow.sdk re-exports these lazily; the defining modules are what type checkers see.
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    from shopsentry.pipelines.sla import deadline_missed

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=SLA,
        callback=AsyncCallback(deadline_missed, kwargs={"dag_id": dag_id, "sla": str(SLA)}),
    )


def _record_run(context: dict[str, Any], state: Literal["success", "failed"]) -> None:
    """Count a finished run for ``shopsentry_dag_runs_total{dag,state}``.

    DAG callbacks run outside the task processes, where no metrics server lives, so the
    count goes to the monitoring part's small run table that the API exposes at scrape
    time. Bookkeeping must never fail a run: errors are logged and swallowed.
    """
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "unknown")
    try:
        from shopsentry.monitoring.metrics import dag_runs_path, record_dag_run

        record_dag_run(dag_runs_path(settings_from_env().state_dir), str(dag_id), state)
    except Exception:
        logger.exception("could not record the %s run of %s", state, dag_id)


def on_dag_success(context: dict[str, Any]) -> None:
    """DAG ``on_success_callback``: count the run as a success."""
    _record_run(context, "success")


def on_dag_failure(context: dict[str, Any]) -> None:
    """DAG ``on_failure_callback``: count the run as failed."""
    _record_run(context, "failed")


def settings_from_env() -> Settings:
    """Settings for a task, from SHOPSENTRY_* (the worker's environment)."""
    from shopsentry.config import load_settings

    return load_settings()


def run_instant(context: dict[str, Any]) -> datetime:
    """The instant a run stands for: its data interval end, else logical date, else
    when it was triggered (a manual run in Airflow 3 may have no logical date)."""
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if value is not None:
            return datetime.fromtimestamp(value.timestamp(), tz=UTC)
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    if run_after is not None:
        return datetime.fromtimestamp(run_after.timestamp(), tz=UTC)
    return datetime.now(UTC)


def day_before(context: dict[str, Any]) -> date:
    """The day before the run's instant: the day a daily 06:00 run reports on."""
    return (run_instant(context) - timedelta(days=1)).date()


def hour_before(context: dict[str, Any]) -> Interval:
    """The complete hour before the run's instant: what an @hourly run processes."""
    end = run_instant(context).replace(minute=0, second=0, microsecond=0)
    return Interval(end - timedelta(hours=1), end)
