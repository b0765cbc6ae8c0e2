"""``POST /v1/events``: the HTTP edge for web, mobile and POS sources.

A batch is all or nothing: every event is validated (the shared codec, so the API and
the detector agree on what is valid) and checked against the key's source before any
is written; then all are sent and flushed, so a 202 means every event is durable in
the log. Purchases go to ``purchase-events``, behaviour to ``user-behavior``, keyed by
``user_id`` so one user's events stay in order on one partition.

A batch holds at most ``api.max_events_per_request`` events (413 at once past it), and
parsing and validation run in a worker thread, so one large request never holds up
the event loop (``/healthz``, other requests). An event id written recently is
acknowledged again without being written twice: a client's retry is harmless.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from shopsentry.api.deps import IngestDep, ServicesDep
from shopsentry.api.models import ErrorBody, FieldError, IngestAccepted, error_responses
from shopsentry.config import ApiSettings
from shopsentry.errors import InvalidEvent, ShopsentryError
from shopsentry.events.codec import decode, encode
from shopsentry.events.schema import AnyEvent, Purchase

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["ingest"])

# The body's schema: the event models themselves (their JSON Schema is merged into the
# document's components by shopsentry.api.openapi).
INGEST_BODY_REF = "#/components/schemas/IngestBody"


def _body_doc() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": "One event or an array of events (a purchase or a behaviour type,"
            " chosen by event_type); `shopsentry schema export` prints each type's JSON Schema.",
            "content": {"application/json": {"schema": {"$ref": INGEST_BODY_REF}}},
        }
    }


@dataclass
class Parsed:
    """A body turned into events, or the reasons it cannot be."""

    events: list[AnyEvent] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    too_many: int | None = None  # the batch's size when it is over the limit
    is_batch: bool = False

    def fail(self, error: dict[str, Any], limit: int) -> None:
        self.error_count += 1
        if len(self.errors) < limit:
            self.errors.append(error)


def _too_deep(item: dict[str, Any]) -> str:
    """The top-level field whose value orjson cannot re-encode (nested too deeply)."""
    for name, value in item.items():
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return str(name)
    return "(event)"


def parse_body(body: bytes, api: ApiSettings, *, max_event_bytes: int) -> Parsed:
    """Parse and validate a request body (run off the event loop: it is CPU work)."""
    parsed = Parsed()
    limit = api.max_errors_reported
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        parsed.fail({"field": "(body)", "reason": f"not valid JSON: {exc}", "index": None}, limit)
        return parsed
    parsed.is_batch = isinstance(payload, list)
    batch = payload if isinstance(payload, list) else [payload]
    if not batch:
        parsed.fail({"field": "(body)", "reason": "empty batch", "index": None}, limit)
        return parsed
    if len(batch) > api.max_events_per_request:
        parsed.too_many = len(batch)
        return parsed
    for i, item in enumerate(batch):
        index = i if parsed.is_batch else None
        if not isinstance(item, dict):
            parsed.fail(
                {"field": "(event)", "reason": "an event must be a JSON object", "index": index},
                limit,
            )
            continue
        try:
            raw = orjson.dumps(item)
        except orjson.JSONEncodeError:
            reason = "nested too deeply (an event's fields are flat values)"
            parsed.fail({"field": _too_deep(item), "reason": reason, "index": index}, limit)
            continue
        try:
            parsed.events.append(decode(raw, max_bytes=max_event_bytes))
        except InvalidEvent as exc:
            for err in exc.errors:
                parsed.fail({**err, "index": index}, limit)
    return parsed


def _unprocessable(parsed: Parsed) -> JSONResponse:
    first = parsed.errors[0]
    shown = len(parsed.errors)
    more = f" (and {parsed.error_count - shown} more)" if parsed.error_count > shown else ""
    body = ErrorBody(
        detail=f"invalid event: {first['field']}: {first['reason']}{more}",
        errors=[FieldError.model_validate(e) for e in parsed.errors],
        error_count=parsed.error_count,
    )
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _too_many(count: int, limit: int) -> JSONResponse:
    body = ErrorBody(
        detail=f"a request carries at most {limit} events; this one has {count}:"
        " split it into smaller batches",
        errors=[FieldError(field="(body)", reason=f"more than {limit} events")],
        error_count=1,
    )
    return JSONResponse(body.model_dump(), status_code=status.HTTP_413_CONTENT_TOO_LARGE)


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestAccepted,
    openapi_extra=_body_doc(),
    responses=error_responses(401, 403, 413, 422, 429, 503),
    summary="Ingest one event or a batch",
)
async def ingest(request: Request, principal: IngestDep, services: ServicesDep) -> Any:
    body = await request.body()
    metrics = services.metrics
    settings = services.settings
    parsed = await run_in_threadpool(
        parse_body, body, settings.api, max_event_bytes=settings.detector.max_event_bytes
    )
    if parsed.too_many is not None:
        metrics.rejected.labels("too_many").inc()
        return _too_many(parsed.too_many, settings.api.max_events_per_request)
    if parsed.error_count:
        metrics.rejected.labels("invalid").inc()
        return _unprocessable(parsed)
    events = parsed.events

    for i, event in enumerate(events):
        if not principal.may_send(event.source):
            metrics.rejected.labels("forbidden_source").inc()
            where = f" (event {i})" if parsed.is_batch else ""
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.source} key may not send source={event.source}{where}",
            )

    topics = settings.topics

    def produce() -> list[tuple[str, AnyEvent]]:
        """Send what is new, flush, then remember it: all under the lock, so two
        concurrent posts of one id cannot both write it."""
        with services.produce_lock:
            recent = services.recent_ids
            seen: set[str] = set()
            fresh = []
            for event in events:
                if event.event_id in recent or event.event_id in seen:
                    continue
                seen.add(event.event_id)
                topic = (
                    topics.purchase_events.name
                    if isinstance(event, Purchase)
                    else topics.user_behavior.name
                )
                fresh.append((topic, event))
            producer = services.producer
            for topic, event in fresh:
                producer.send(topic, encode(event), key=event.user_id.encode())
            if fresh:
                producer.flush()
            recent.add_all(seen)
            return fresh

    try:
        routed = await run_in_threadpool(produce)
    except ShopsentryError as exc:
        metrics.rejected.labels("log_unavailable").inc()
        logger.warning("ingest of %d events failed: %s", len(events), exc.one_line())
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the event log did not acknowledge the events: {exc.message}",
            headers={"Retry-After": "1"},
        ) from None

    per_topic = Counter(topic for topic, _ in routed)
    for topic, event in routed:
        metrics.ingested.labels(topic, event.source).inc()
    written = {event.event_id for _, event in routed}
    duplicates = sorted({e.event_id for e in events} - written)
    metrics.duplicates.inc(len(events) - len(routed))
    return IngestAccepted(
        accepted=len(routed),
        event_ids=[e.event_id for e in events],
        topics=dict(per_topic),
        duplicates=duplicates,
    )
