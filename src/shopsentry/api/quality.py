"""Live model quality and drift from the warehouse (``monitoring.*``, docs/model-ops.md).

Analysts read the daily quality of the champion and the challenger (precision, recall,
PR-AUC at the threshold, with each day's label maturity), the two compared on the
purchases both scored, and one day's drift per feature. Like ``/v1/analytics/*`` the
routes answer 503 with the command to run while the warehouse is not built.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from shopsentry.api.analytics import End, Start, route_rows
from shopsentry.api.deps import AnalystDep, ServicesDep
from shopsentry.api.models import error_responses
from shopsentry.api.quality_models import (
    DriftReport,
    FeatureDriftRow,
    ModelComparisonRow,
    ModelQualityReport,
    ModelQualityRow,
    ScoreDriftRow,
)

router = APIRouter(prefix="/v1/models", tags=["models"])

_ERRORS = error_responses(401, 403, 422, 429, 503)
Day = Annotated[date | None, Query(description="the purchase day (default: the latest)")]
Version = Annotated[
    str | None,
    Query(
        description="compare with this model version's reference (default: the day's champion)",
        max_length=64,
        pattern=r"^[0-9A-Za-z._-]+$",
    ),
]


@router.get("/quality", response_model=ModelQualityReport, responses=_ERRORS)
def model_quality(
    _: AnalystDep, services: ServicesDep, start: Start = None, end: End = None
) -> ModelQualityReport:
    """Per day: each model's quality from labels known so far, champion vs challenger on
    the same purchases, and each model's score drift."""
    quality = route_rows(services, "model_quality", start=start, end=end)
    comparison = route_rows(services, "model_comparison", start=start, end=end)
    scores = route_rows(services, "score_drift", start=start, end=end)
    return ModelQualityReport(
        as_of=quality[0]["as_of"] if quality else None,
        rows=[ModelQualityRow.model_validate(r) for r in quality],
        comparison=[ModelComparisonRow.model_validate(r) for r in comparison],
        score_drift=[ScoreDriftRow.model_validate(r) for r in scores],
    )


@router.get("/drift", response_model=DriftReport, responses=_ERRORS)
def feature_drift(
    _: AnalystDep, services: ServicesDep, day: Day = None, model_version: Version = None
) -> DriftReport:
    """One day's PSI and missing share per feature against a model's training reference."""
    rows = route_rows(services, "feature_drift", day=day, model_version=model_version)
    settings = services.settings.modelops
    return DriftReport(
        day=rows[0]["day"] if rows else day,
        model_version=rows[0]["model_version"] if rows else model_version,
        feature_psi_alert=settings.feature_psi_alert,
        score_psi_alert=settings.score_psi_alert,
        top_features=settings.top_features,
        features=[FeatureDriftRow.model_validate(r) for r in rows],
    )
