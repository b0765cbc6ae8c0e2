"""Liveness and metrics: ``/healthz`` for load balancers, ``/metrics`` for Prometheus.

Both are open (no key): they reveal no events or users, and scrapers and probes do not
carry credentials.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shopsentry.api.deps import ServicesDep
from shopsentry.api.models import Health, HealthCheck

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(services: ServicesDep) -> JSONResponse:
    """200 when the log answers and the store is readable; 503 with the failing check otherwise."""
    checks: dict[str, HealthCheck] = {}
    try:
        topics = await run_in_threadpool(services.log.list_topics)
        wanted = services.settings.topics.fraud_alerts.name
        checks["log"] = HealthCheck(
            ok=wanted in topics, detail="" if wanted in topics else f"topic {wanted} missing"
        )
    except Exception as exc:
        checks["log"] = HealthCheck(ok=False, detail=f"{type(exc).__name__}: {exc}")
    try:
        checks["store"] = HealthCheck(ok=await run_in_threadpool(services.store.ping))
    except Exception as exc:
        checks["store"] = HealthCheck(ok=False, detail=f"{type(exc).__name__}: {exc}")
    consumer = services.consumer
    if consumer is not None:
        checks["consumer"] = HealthCheck(
            ok=consumer.alive and consumer.last_error is None, detail=consumer.last_error or ""
        )
    healthy = all(c.ok for c in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    code = status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(services: ServicesDep) -> Response:
    payload = await run_in_threadpool(generate_latest, services.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
