"""The design's "SLA: 1 hour" for the batch DAGs, the way Airflow 3 supports it.

Airflow 3 removed task-level ``sla``; a DAG declares a *deadline alert* instead: a
reference point (when the run was queued), an interval (1 hour) and a callback the
triggerer awaits if the run has not finished by then. The callback lives here, in an
importable module, because the triggerer imports it by dotted path.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

logger = logging.getLogger(__name__)

SLA = timedelta(hours=1)


async def deadline_missed(context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Awaited by the triggerer when a DAG run is still going an hour after it was queued.

    Logs one line an operator can alert on (the notifier and Prometheus read logs and
    ``dag_runs_total``); ``kwargs`` carries what the DAG passed (its id and SLA).
    """
    dag_id = kwargs.get("dag_id") or (context or {}).get("dag_run", {}).get("dag_id", "?")
    logger.error(
        "SLA missed: DAG %s has run longer than %s since it was queued",
        dag_id,
        kwargs.get("sla", str(SLA)),
    )
