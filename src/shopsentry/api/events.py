"""``POST /v1/events``: the HTTP edge for web, mobile and POS sources.

A batch is all or nothing: every event is validated (the shared codec, so the API and
the detector agree on what is valid) and checked against the key's source before any
is written; then all are sent and flushed, so a 202 means every event is durable in
the log. Purchases go to ``purchase-events``, behaviour to ``user-behavior``, keyed by
``user_id`` so one user's events stay in order on one partition.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from shopsentry.api.deps import IngestDep, ServicesDep
from shopsentry.api.models import ErrorBody, FieldError, IngestAccepted
from shopsentry.errors import InvalidEvent, ShopsentryError
from shopsentry.events.codec import decode, encode
from shopsentry.events.schema import Purchase

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["ingest"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "description": "One event or an array of events (purchase or a behaviour"
                    " type, chosen by"
                    " event_type); see `shopsentry schema export` for each type's JSON Schema.",
                    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
                }
            }
        },
    }
}


def _unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    first = errors[0]
    body = ErrorBody(
        detail=f"invalid event: {first['field']}: {first['reason']}",
        errors=[FieldError.model_validate(e) for e in errors],
    )
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestAccepted,
    openapi_extra=_BODY_DOC,
    responses={
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    summary="Ingest one event or a batch",
)
async def ingest(request: Request, principal: IngestDep, services: ServicesDep) -> Any:
    body = await request.body()
    metrics = services.metrics
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        metrics.rejected.labels("invalid").inc()
        return _unprocessable(
            [{"field": "(body)", "reason": f"not valid JSON: {exc}", "index": None}]
        )
    batch = payload if isinstance(payload, list) else [payload]
    is_batch = isinstance(payload, list)
    if not batch:
        metrics.rejected.labels("invalid").inc()
        return _unprocessable([{"field": "(body)", "reason": "empty batch", "index": None}])

    events = []
    errors: list[dict[str, Any]] = []
    max_bytes = services.settings.detector.max_event_bytes
    for i, item in enumerate(batch):
        index = i if is_batch else None
        if not isinstance(item, dict):
            errors.append(
                {"field": "(event)", "reason": "an event must be a JSON object", "index": index}
            )
            continue
        try:
            events.append(decode(orjson.dumps(item), max_bytes=max_bytes))
        except InvalidEvent as exc:
            errors.extend({**err, "index": index} for err in exc.errors)
    if errors:
        metrics.rejected.labels("invalid").inc()
        return _unprocessable(errors)

    for i, event in enumerate(events):
        if not principal.may_send(event.source):
            metrics.rejected.labels("forbidden_source").inc()
            where = f" (event {i})" if is_batch else ""
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.source} key may not send source={event.source}{where}",
            )

    topics = services.settings.topics
    routed = [
        (
            topics.purchase_events.name
            if isinstance(event, Purchase)
            else topics.user_behavior.name,
            event,
        )
        for event in events
    ]

    def produce() -> None:
        with services.produce_lock:
            producer = services.producer
            for topic, event in routed:
                producer.send(topic, encode(event), key=event.user_id.encode())
            producer.flush()

    try:
        await run_in_threadpool(produce)
    except ShopsentryError as exc:
        metrics.rejected.labels("log_unavailable").inc()
        logger.warning("ingest of %d events failed: %s", len(routed), exc.one_line())
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the event log did not acknowledge the events: {exc.message}",
            headers={"Retry-After": "1"},
        ) from None

    per_topic = Counter(topic for topic, _ in routed)
    for topic, event in routed:
        metrics.ingested.labels(topic, event.source).inc()
    return IngestAccepted(
        accepted=len(routed), event_ids=[e.event_id for e in events], topics=dict(per_topic)
    )
