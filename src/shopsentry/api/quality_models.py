"""Response bodies of ``/v1/models/quality`` and ``/v1/models/drift``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["champion", "challenger"]


class ModelQualityRow(BaseModel):
    day: date
    model_role: Role
    model_version: str
    purchases: int
    alerts: int
    alert_rate: float | None = None
    labelled_frauds: int = Field(description="frauds whose label or review was known at as_of")
    true_positives: int
    precision_at_threshold: float | None = None
    recall_at_threshold: float | None = None
    pr_auc: float | None = Field(default=None, description="average precision")
    label_maturity: float | None = Field(
        default=None, description="share of the day's fraud expected to be labelled at as_of"
    )


class ModelComparisonRow(BaseModel):
    day: date
    purchases: int
    labelled_frauds: int
    champion_version: str
    challenger_version: str
    champion_alerts: int
    challenger_alerts: int
    champion_precision: float | None = None
    challenger_precision: float | None = None
    champion_recall: float | None = None
    challenger_recall: float | None = None
    champion_pr_auc: float | None = None
    challenger_pr_auc: float | None = None
    label_maturity: float | None = None


class ScoreDriftRow(BaseModel):
    day: date
    model_version: str
    model_role: Role
    purchases: int
    psi: float | None = None


class ModelQualityReport(BaseModel):
    source: Literal["warehouse"] = "warehouse"
    as_of: datetime | None = Field(description="labels known by this time count")
    rows: list[ModelQualityRow]
    comparison: list[ModelComparisonRow]
    score_drift: list[ScoreDriftRow]


class FeatureDriftRow(BaseModel):
    feature: str
    purchases: int
    psi: float | None = None
    missing_share: float | None = None
    reference_missing_share: float | None = None
    importance_rank: int | None = Field(default=None, description="1 = most important")


class DriftReport(BaseModel):
    source: Literal["warehouse"] = "warehouse"
    day: date | None
    model_version: str | None
    feature_psi_alert: float
    score_psi_alert: float
    top_features: int
    features: list[FeatureDriftRow]
