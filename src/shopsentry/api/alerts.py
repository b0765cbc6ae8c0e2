"""Alert queue and analyst reviews.

A review is published to ``alert-reviews`` (and flushed) before the store marks the
alert reviewed: the warehouse loads reviews as labels for training and for the
false-positive-rate KPI, so a review the log never got must not look done here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from shopsentry.api.deps import AnalystDep, ServicesDep
from shopsentry.api.models import (
    AlertDetail,
    AlertPage,
    AlertSummary,
    QueryTime,
    ReviewRequest,
    ReviewStats,
    error_responses,
    field_error,
)
from shopsentry.api.read_model import AlertFilter, InvalidCursor
from shopsentry.api.reasons import explain, explain_alert
from shopsentry.api.security import MAX_KEY_NAME
from shopsentry.errors import ShopsentryError
from shopsentry.events.codec import encode
from shopsentry.events.schema import Review, Severity

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["alerts"])

AlertId = Annotated[str, Path(min_length=1, max_length=80, description="alert-<event_id>")]
_ERRORS = error_responses(401, 403, 422, 429)


@router.get(
    "/alerts", response_model=AlertPage, responses=_ERRORS, summary="List alerts, newest first"
)
def list_alerts(
    _: AnalystDep,
    services: ServicesDep,
    alert_status: Annotated[Literal["open", "reviewed"] | None, Query(alias="status")] = None,
    severity: Severity | None = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[QueryTime | None, Query(description="decided at or after (ISO 8601)")] = None,
    until: Annotated[QueryTime | None, Query(description="decided before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
) -> AlertPage | JSONResponse:
    flt = AlertFilter(
        status=alert_status, severity=severity, user_id=user_id, since=since, until=until
    )
    try:
        items, total, next_cursor = services.store.list_alerts(
            flt, limit=limit, offset=offset, cursor=cursor
        )
    except InvalidCursor as exc:
        return field_error("cursor", exc.one_line())
    store = services.store
    return AlertPage(
        items=[
            AlertSummary.model_validate(explain_alert(i, store.event_of(i["event_id"])))
            for i in items
        ],
        total=total,
        limit=limit,
        offset=0 if cursor else offset,
        next_cursor=next_cursor,
    )


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertDetail,
    responses=error_responses(401, 403, 404, 422, 429),
)
def get_alert(alert_id: AlertId, _: AnalystDep, services: ServicesDep) -> AlertDetail:
    """The alert with its event, score, top features and the user's recent history."""
    store = services.store
    alert = store.get_alert(alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    event = store.event_of(alert["event_id"])
    decision = store.decision_of(alert["event_id"])
    if decision is not None:
        decision["top_features"] = explain(
            decision["top_features"], currency=alert["currency"], event=event
        )
    return AlertDetail.model_validate(
        {
            **explain_alert(alert, event),
            "event": event,
            "decision": decision,
            "history": store.user_history(alert["user_id"]),
        }
    )


@router.post(
    "/alerts/{alert_id}/review",
    response_model=AlertSummary,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503),
    summary="Record an analyst's verdict",
)
async def review_alert(
    alert_id: AlertId, body: ReviewRequest, principal: AnalystDep, services: ServicesDep
) -> AlertSummary:
    store = services.store
    alert = store.get_alert(alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    review = Review(
        alert_id=alert["alert_id"],
        event_id=alert["event_id"],
        user_id=alert["user_id"],
        verdict=body.verdict,
        note=body.note,
        reviewer=principal.name[:MAX_KEY_NAME],  # keys made before the limit may be longer
        reviewed_at=datetime.now(UTC),
    )

    def publish() -> None:
        with services.produce_lock:
            producer = services.producer
            producer.send(
                services.settings.topics.reviews.name, encode(review), key=review.user_id.encode()
            )
            producer.flush()

    try:
        await run_in_threadpool(publish)
    except ShopsentryError as exc:
        logger.warning("review of %s not published: %s", alert_id, exc.one_line())
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the event log did not acknowledge the review: {exc.message}",
            headers={"Retry-After": "1"},
        ) from None
    updated = await run_in_threadpool(store.record_review, review)
    services.metrics.reviews.labels(review.verdict).inc()
    logger.info("alert %s reviewed as %s by %s", alert_id, review.verdict, principal.key_id)
    return AlertSummary.model_validate(explain_alert(updated, store.event_of(updated["event_id"])))


@router.get(
    "/reviews/stats", response_model=ReviewStats, responses=_ERRORS, summary="False-positive rate"
)
def review_stats(
    _: AnalystDep,
    services: ServicesDep,
    since: Annotated[
        QueryTime | None, Query(description="count reviews made since (ISO 8601)")
    ] = None,
) -> ReviewStats:
    """Counts of reviews and the false-positive rate (false positives / reviewed alerts)."""
    return ReviewStats.model_validate(services.store.review_stats(since=since))
