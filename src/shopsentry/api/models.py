"""Request and response bodies of the HTTP API (kept apart from the event schemas:
the wire contract of the service may evolve without touching what flows in the log)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from shopsentry.events.schema import Band, Severity, Verdict

# Times a query may name: the store keeps epoch milliseconds, so a time before the
# epoch or absurdly far ahead is a mistake to name, not a query to run.
QUERY_TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
QUERY_TIME_MAX = datetime(3000, 1, 1, tzinfo=UTC)


def _query_time(value: datetime) -> datetime:
    """A query time in UTC (a time without an offset is read as UTC), within range."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not QUERY_TIME_MIN <= value < QUERY_TIME_MAX:
        raise ValueError("must be between 1970-01-01 and 2999-12-31 (UTC)")
    return value


def _not_a_number(value: Any) -> Any:
    """An ISO 8601 text only: pydantic would read '1700000000' or '1e-9' as epoch seconds."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 date or time, not a number")
    return value


QueryTime = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_query_time)]


class FieldError(BaseModel):
    field: str
    reason: str
    index: int | None = Field(
        default=None, description="Position in a batch, when the body was an array."
    )


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: one line for a person, and the fields at fault."""

    detail: str
    errors: list[FieldError] = Field(
        default=[], description="The first problems found (at most api.max_errors_reported)."
    )
    error_count: int | None = Field(
        default=None, description="How many problems there were in all, when more than listed."
    )


_ERROR_MEANINGS: dict[int, str] = {
    400: "The body could not be read (it is not UTF-8 JSON).",
    401: "No API key, or one that is not valid.",
    403: "The key's role (or source) may not do this.",
    404: "No such resource.",
    413: "The body is too large (bytes or events).",
    422: "A field is invalid; `errors` names each one.",
    429: "The key's rate limit is exceeded; see Retry-After.",
    503: "A dependency (the log, the warehouse) cannot answer now; see Retry-After.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes a route can answer, all as ErrorBody."""
    return {code: {"model": ErrorBody, "description": _ERROR_MEANINGS[code]} for code in codes}


def field_error(field: str, reason: str, status_code: int = 422) -> JSONResponse:
    """An error response naming the one field at fault."""
    body = ErrorBody(
        detail=f"invalid request: {field}: {reason}",
        errors=[FieldError(field=field, reason=reason)],
    )
    return JSONResponse(body.model_dump(), status_code=status_code)


class IngestAccepted(BaseModel):
    accepted: int = Field(description="How many events were written.")
    event_ids: list[str] = Field(description="Every event id of the request, all durable.")
    topics: dict[str, int] = Field(description="How many events went to each topic.")
    duplicates: list[str] = Field(
        default=[],
        description="Event ids written by an earlier request (a retry): acknowledged, not"
        " written again.",
    )


class Feature(BaseModel):
    name: str
    value: float | None
    contribution: float
    text: str = Field(default="", description="What the feature says, in words and units.")
    direction: Literal["raises", "lowers"] | None = Field(
        default=None, description="Whether it pushed the fraud score up or down."
    )


class AlertSummary(BaseModel):
    alert_id: str
    event_id: str
    user_id: str
    order_id: str
    amount: float
    currency: str
    source: str
    probability: float
    severity: Severity
    band: Band
    model_version: str
    top_features: list[Feature]
    occurred_at: datetime
    decided_at: datetime
    status: Literal["open", "reviewed"]
    verdict: Verdict | None = None
    note: str | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    rule_set_version: int | None = Field(
        default=None, description="The analyst rule set in force when it was decided."
    )
    rules_fired: list[str] = Field(
        default_factory=list, description="Active rules and list entries that decided it."
    )
    shadow_rules_fired: list[str] = Field(
        default_factory=list, description="Shadow rules that would have fired (not acting)."
    )
    list_hits: list[str] = Field(default_factory=list, description="List entries it matched.")
    model_band: Band | None = Field(
        default=None, description="The model's own band, before any rule overrode it."
    )


class AlertPage(BaseModel):
    items: list[AlertSummary]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class HistoryItem(BaseModel):
    event_id: str
    order_id: str
    amount: float
    currency: str
    source: str
    occurred_at: datetime
    payment_method: str | None = None
    country: str | None = None
    band: Band | None = None
    probability: float | None = None
    decided_at: datetime | None = None


class DecisionInfo(BaseModel):
    probability: float
    band: Band
    model_version: str
    top_features: list[Feature]
    latency_ms: dict[str, float]
    decided_at: datetime


class AlertDetail(AlertSummary):
    event: dict[str, Any] | None = Field(
        description="The original purchase, when the service saw it."
    )
    decision: DecisionInfo | None
    history: list[HistoryItem] = Field(
        description="The user's recent purchases and their decisions, newest first."
    )


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    note: Annotated[str, Field(max_length=2000)] = ""


class ReviewStats(BaseModel):
    alerts: int
    open: int
    reviewed: int
    confirmed_fraud: int
    false_positive: int
    false_positive_rate: float | None = Field(
        description="false_positive / reviewed; null before any review."
    )


class DailySales(BaseModel):
    day: date
    orders: int
    revenue: float
    avg_order_value: float | None = None
    customers: int | None = None
    accepted_revenue: float | None = None
    fraud_revenue: float | None = None


class DailySalesReport(BaseModel):
    source: Literal["warehouse", "stream"]
    rows: list[DailySales]


class FraudKpis(BaseModel):
    source: Literal["warehouse"] = "warehouse"
    rows: list[dict[str, Any]]


class HealthCheck(BaseModel):
    ok: bool
    detail: str = ""


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, HealthCheck]


class DashboardSeries(BaseModel):
    t: list[int] = Field(description="Minute starts, epoch seconds.")
    events_per_minute: dict[str, list[float]] = Field(
        description="Per minute; the minute in progress at its pace so far."
    )
    decisions_by_band: dict[str, list[float]]
    latency_p95_ms: list[float | None]
    fraud_rate: list[float | None]
    false_positive_rate: list[float | None]


class LagSeries(BaseModel):
    t: list[float]
    lag: list[int]


class DashboardSummary(BaseModel):
    generated_at: datetime
    totals: dict[str, Any]
    series: DashboardSeries
    consumer_lag: LagSeries
    alert_queue: list[AlertSummary]
    daily_sales: DailySalesReport
    ingested_total: float
