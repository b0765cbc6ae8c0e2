"""model_monitoring: rebuild the warehouse's live-quality and drift models as of a time.

The quality models (``monitoring.model_quality_daily``, ``model_comparison_daily``,
``label_maturity_daily``, ``score_drift_daily``) depend only on the staging layer and
are also rebuilt by every hourly ETL. Feature drift (``monitoring.feature_drift_daily``)
reads each purchase's point-in-time feature values from ``ml_features.training_set``,
which the hourly ETL leaves to the ML selection, so it is built here (``drift=True``):
every day by the ``daily_fraud_report`` DAG's ``refresh_monitoring`` task, on demand by
``shopsentry batch run model_monitoring``, and by the weekly retrain. See
docs/model-ops.md.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shopsentry.pipelines.common import Progress, no_progress

if TYPE_CHECKING:
    from shopsentry.config import Settings
    from shopsentry.warehouse.dbt import DbtRunResult

logger = logging.getLogger(__name__)

MONITORING = "+path:models/monitoring"


def monitoring_vars(settings: Settings, as_of: datetime | None = None) -> list[str]:
    """dbt ``--vars`` for the monitoring models: the settings' maturity and ``as_of``."""
    values: dict[str, Any] = {"label_maturity_days": settings.modelops.label_maturity_days}
    if as_of is not None:
        at = as_of.astimezone(UTC).replace(tzinfo=None) if as_of.tzinfo else as_of
        values["as_of"] = at.isoformat(sep=" ")
    return ["--vars", json.dumps(values)]


def selection(*, drift: bool) -> list[str]:
    """The monitoring models and what they need; without drift, nothing of the ML layer."""
    select = ["--select", MONITORING, "--exclude-resource-type", "unit_test"]
    return select if drift else [*select, "--exclude", "tag:ml"]


def model_monitoring(
    settings: Settings,
    as_of: datetime | None = None,
    *,
    drift: bool = True,
    progress: Progress = no_progress,
) -> DbtRunResult:
    """Build the monitoring models (with feature drift unless ``drift=False``)."""
    from shopsentry.pipelines.hourly_etl import transform

    result = transform(settings, select=selection(drift=drift), as_of=as_of, progress=progress)
    logger.info("model monitoring as of %s: %d models built", as_of or "now", result.models_built)
    return result
