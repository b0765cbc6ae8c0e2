"""The dashboard page and the JSON it polls.

The page itself is public static HTML + JS (it holds no data); every number it shows
comes from ``/v1/dashboard/summary``, which needs an analyst key like the rest of the
alert API. In demo mode the page is pre-filled with the well-known demo analyst key.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from shopsentry.api import summary
from shopsentry.api.analytics import WarehouseUnavailable, warehouse_rows
from shopsentry.api.deps import AnalystDep, Services, ServicesDep
from shopsentry.api.models import (
    DailySales,
    DailySalesReport,
    DashboardSummary,
    error_responses,
)
from shopsentry.api.security import DEMO_KEYS, format_token

logger = logging.getLogger(__name__)

router = APIRouter(tags=["dashboard"])
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# Only the service's own scripts run on the page, and it talks only to the service.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def _page(request: Request, services: Services, template: str) -> HTMLResponse:
    demo_key = ""
    if services.settings.api.demo_mode:
        key_id, secret, _, _ = next(k for k in DEMO_KEYS if k[2] == "analyst")
        demo_key = format_token(key_id, secret)
    response = templates.TemplateResponse(request, template, {"demo_key": demo_key})
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    return response


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@router.get("/dashboard", response_class=HTMLResponse, summary="The live dashboard page")
def dashboard_page(request: Request, services: ServicesDep) -> HTMLResponse:
    return _page(request, services, "dashboard.html")


@router.get("/dashboard/rules", response_class=HTMLResponse, summary="The analyst rules page")
def rules_page(request: Request, services: ServicesDep) -> HTMLResponse:
    """Rules with their hit counts, an editor that checks as you type, backtests drawn
    per day, save in shadow and activate (admins); it calls `/v1/rules`."""
    return _page(request, services, "rules.html")


def _daily_sales(services: Services, days: int) -> DailySalesReport:
    try:
        rows = warehouse_rows(
            services.settings.warehouse_path,
            "daily_sales",
            timer=services.metrics.query_seconds,
            start=None,
            end=None,
        )
        return DailySalesReport(
            source="warehouse",
            rows=[DailySales.model_validate(r) for r in rows][-days:],
        )
    except WarehouseUnavailable:
        stream = summary.stream_daily_sales(services.store, days)
        return DailySalesReport(
            source="stream", rows=[DailySales.model_validate(r) for r in stream]
        )


def build_summary(services: Services, window_minutes: int) -> dict[str, Any]:
    store = services.store
    lag = list(services.consumer.lag_samples) if services.consumer is not None else []
    ingested = sum(
        sample.value
        for metric in services.metrics.ingested.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    return {
        "generated_at": datetime.now(UTC),
        "totals": summary.totals(store),
        "series": summary.minute_series(store, window_minutes),
        "consumer_lag": {"t": [t for t, _ in lag], "lag": [v for _, v in lag]},
        "alert_queue": summary.alert_queue(store),
        "daily_sales": _daily_sales(services, 14),
        "ingested_total": ingested,
    }


@router.get(
    "/v1/dashboard/summary",
    response_model=DashboardSummary,
    responses=error_responses(401, 403, 422, 429),
    summary="Everything the dashboard draws",
)
async def dashboard_summary(
    _: AnalystDep,
    services: ServicesDep,
    window_minutes: Annotated[int, Query(ge=5, le=24 * 60)] = 60,
) -> Any:
    return await run_in_threadpool(build_summary, services, window_minutes)
