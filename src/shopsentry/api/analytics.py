"""Reports over the warehouse (read-only DuckDB through :mod:`shopsentry.warehouse.queries`).

The warehouse is built by the batch path; until it is, these endpoints answer 503 with
the command that builds it rather than an empty report that looks like "no sales".
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from prometheus_client import Histogram

from shopsentry.api.deps import AnalystDep, Services, ServicesDep
from shopsentry.api.models import DailySales, DailySalesReport, FraudKpis, error_responses
from shopsentry.errors import ShopsentryError

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

_ERRORS = error_responses(401, 403, 422, 429, 503)
Start = Annotated[date | None, Query(description="first day (inclusive)")]
End = Annotated[date | None, Query(description="last day (inclusive)")]


class WarehouseUnavailable(Exception):
    """Raised to the route when the warehouse cannot answer; carries the 503 message."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def _query(name: str) -> Callable[..., list[dict[str, Any]]]:
    try:
        module = importlib.import_module("shopsentry.warehouse.queries")
    except ModuleNotFoundError as exc:
        if exc.name != "shopsentry.warehouse.queries":
            raise
        raise WarehouseUnavailable("the warehouse query module is not installed") from None
    func: Callable[..., list[dict[str, Any]]] = getattr(module, name)
    return func


def warehouse_rows(
    warehouse: Path, name: str, *, timer: Histogram | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Run one read-only query on the warehouse file ``warehouse``; any reason it cannot
    answer is a WarehouseUnavailable.

    ``timer`` (``shopsentry_query_duration_seconds{query}``) observes every query the
    warehouse actually ran, failed ones included: a query that gives up after a long wait
    for the lock is exactly what the p95 alert must see. A missing warehouse is no query.
    """
    if not warehouse.exists():
        raise WarehouseUnavailable(
            f"the warehouse is not built yet ({warehouse.name} missing):"
            " run `shopsentry batch run hourly_etl`"
        )
    func = _query(name)
    started = time.perf_counter()
    try:
        return func(warehouse, **kwargs)
    except ShopsentryError as exc:
        logger.warning("warehouse query %s failed: %s", name, exc.one_line())
        raise WarehouseUnavailable(
            exc.one_line(), retry_after=5 if exc.retryable else None
        ) from None
    finally:
        if timer is not None:
            timer.labels(name).observe(time.perf_counter() - started)


def _unavailable(exc: WarehouseUnavailable) -> HTTPException:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, exc.message, headers=headers)


def route_rows(services: Services, name: str, **params: Any) -> list[dict[str, Any]]:
    """One timed warehouse query for a route; a busy or missing warehouse is a 503."""
    try:
        return warehouse_rows(
            services.settings.warehouse_path, name, timer=services.metrics.query_seconds, **params
        )
    except WarehouseUnavailable as exc:
        raise _unavailable(exc) from None


@router.get("/daily-sales", response_model=DailySalesReport, responses=_ERRORS)
def daily_sales(
    _: AnalystDep, services: ServicesDep, start: Start = None, end: End = None
) -> DailySalesReport:
    """Orders and revenue per day (the warehouse's analytics.daily_sales)."""
    rows = route_rows(services, "daily_sales", start=start, end=end)
    return DailySalesReport(source="warehouse", rows=[DailySales.model_validate(r) for r in rows])


@router.get("/fraud-kpis", response_model=FraudKpis, responses=_ERRORS)
def fraud_kpis(
    _: AnalystDep, services: ServicesDep, start: Start = None, end: End = None
) -> FraudKpis:
    """Fraud KPIs per day from the warehouse (alerts, caught fraud, false-positive rate)."""
    return FraudKpis(rows=route_rows(services, "fraud_kpis", start=start, end=end))
