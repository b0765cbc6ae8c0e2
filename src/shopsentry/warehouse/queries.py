"""Read-only questions to the warehouse, for the API, the dashboard and the daily report.

Every function opens a read-only DuckDB connection for the one query (the batch jobs
hold the only writer and must not be blocked), binds every value as a parameter (no
value is ever formatted into SQL), and returns plain rows: dicts with JSON-friendly
values (decimals as floats, dates as ``datetime.date``). Missing ``start``/``end``
mean "no bound".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from shopsentry.warehouse.db import WarehouseError, connect

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

Dimension = Literal["source", "country", "payment_method"]
_DIMENSIONS: tuple[str, ...] = ("source", "country", "payment_method")


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def run_query(warehouse: Path, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run one parameterised statement read-only on the warehouse file ``warehouse`` and
    return its rows as dicts."""
    import duckdb

    started = time.perf_counter()
    with connect(warehouse, read_only=True) as con:
        try:
            cursor = con.execute(sql, list(params))
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall()
        except duckdb.CatalogException as exc:
            raise WarehouseError(
                f"the warehouse lacks a table this query needs: {str(exc).splitlines()[0]}",
                hint="run `shopsentry batch run hourly_etl` to build the analytics layer",
            ) from exc
    logger.debug(
        "warehouse query %d rows in %.1f ms", len(rows), (time.perf_counter() - started) * 1000
    )
    return [{name: _plain(v) for name, v in zip(names, row, strict=True)} for row in rows]


def _range(
    column: str, start: date | datetime | None, end: date | datetime | None
) -> tuple[str, list[Any]]:
    """``where`` clause bounding ``column`` to [start, end] (both inclusive) with parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if start is not None:
        clauses.append(f"{column} >= ?")
        params.append(start)
    if end is not None:
        clauses.append(f"{column} <= ?")
        params.append(end)
    return ("where " + " and ".join(clauses)) if clauses else "", params


def daily_sales(
    warehouse: Path, *, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """The design's daily_sales: orders, revenue and average order value per day."""
    where, params = _range("purchase_date", start, end)
    return run_query(
        warehouse,
        f"""select purchase_date as day, total_orders as orders, total_revenue as revenue,
                   avg_order_value, customers, accepted_revenue, fraud_revenue
            from analytics.daily_sales {where}
            order by purchase_date""",
        params,
    )


def hourly_sales(
    warehouse: Path, *, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Orders, revenue and alerts per hour of purchase time (UTC)."""
    where, params = _range("order_hour", start, end)
    return run_query(
        warehouse,
        f"""select order_hour as hour, total_orders as orders, total_revenue as revenue,
                   avg_order_value, customers, alerts
            from analytics.hourly_sales {where}
            order by order_hour""",
        params,
    )


def sales_by_segment(
    warehouse: Path,
    dimension: Dimension,
    *,
    start: date | None = None,
    end: date | None = None,
) -> list[dict[str, Any]]:
    """Orders and revenue per segment of one dimension, summed over the date range."""
    if dimension not in _DIMENSIONS:
        raise WarehouseError(
            f"unknown dimension {dimension!r}", hint=f"use one of {', '.join(_DIMENSIONS)}"
        )
    where, params = _range("order_date", start, end)
    where = (where + " and" if where else "where") + " dimension = ?"
    return run_query(
        warehouse,
        f"""select segment, sum(total_orders) as orders, sum(total_revenue) as revenue,
                   sum(alerts) as alerts, sum(confirmed_fraud) as confirmed_fraud
            from analytics.daily_sales_by_segment {where}
            group by segment
            order by revenue desc, segment""",
        [*params, dimension],
    )


def fraud_kpis(
    warehouse: Path, *, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """Per purchase date: alert rate, confirmed fraud, review precision and false-positive
    rate, loss prevented, detection latency."""
    where, params = _range("order_date", start, end)
    return run_query(
        warehouse,
        f"""select order_date as day, orders, decided_orders, alerts, declined, alert_rate,
                   confirmed_fraud, detected_fraud, fraud_detection_rate, reviewed_alerts,
                   review_confirmed, review_false_positives, false_positive_rate,
                   review_precision, loss_prevented, fraud_loss, revenue,
                   detection_latency_avg_ms, detection_latency_p50_ms,
                   detection_latency_p95_ms, detection_latency_max_ms
            from analytics.fraud_kpis_daily {where}
            order by order_date""",
        params,
    )


def top_scenarios(
    warehouse: Path, *, start: date | None = None, end: date | None = None, limit: int = 10
) -> list[dict[str, Any]]:
    """Fraud scenarios ranked by confirmed fraud orders over the range."""
    where, params = _range("order_date", start, end)
    return run_query(
        warehouse,
        f"""select scenario, sum(fraud_orders) as fraud_orders, sum(detected) as detected,
                   sum(fraud_amount) as fraud_amount, sum(loss_prevented) as loss_prevented
            from analytics.fraud_scenarios_daily {where}
            group by scenario
            order by fraud_orders desc, scenario
            limit ?""",
        [*params, int(limit)],
    )


def alerts_on(warehouse: Path, day: date, *, limit: int = 20) -> list[dict[str, Any]]:
    """The day's alerts, highest probability first, with what became of each."""
    return run_query(
        warehouse,
        """select alert_id, event_id, order_id, user_id, occurred_at, amount, fraud_probability,
                  alert_severity, band, review_verdict, is_confirmed_fraud, fraud_scenario,
                  detection_latency_ms
           from analytics.fct_orders
           where is_alerted and order_date = ?
           order by fraud_probability desc, event_id
           limit ?""",
        [day, int(limit)],
    )


def funnel(
    warehouse: Path, *, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """Users per day at each funnel stage and the conversion rates between them."""
    where, params = _range("activity_date", start, end)
    return run_query(
        warehouse,
        f"""select activity_date as day, active_users, viewers, searchers, cart_users, buyers,
                   view_to_cart_rate, cart_to_purchase_rate, view_to_purchase_rate
            from analytics.funnel_daily {where}
            order by activity_date""",
        params,
    )


def customer_segments(warehouse: Path) -> list[dict[str, Any]]:
    """Customers, lifetime value and average recency per RFM segment."""
    return run_query(
        warehouse,
        """select rfm_segment as segment, count(*) as customers,
                  sum(lifetime_value) as lifetime_value, avg(lifetime_value) as avg_lifetime_value,
                  avg(recency_days) as avg_recency_days, avg(orders) as avg_orders
           from analytics.dim_customers
           group by rfm_segment
           order by lifetime_value desc, rfm_segment""",
    )


def top_customers(warehouse: Path, *, limit: int = 20) -> list[dict[str, Any]]:
    """Customers with the highest lifetime value."""
    return run_query(
        warehouse,
        """select user_id, orders, lifetime_value, projected_annual_value, rfm_segment,
                  recency_days, confirmed_fraud_orders
           from analytics.dim_customers
           order by lifetime_value desc, user_id
           limit ?""",
        [int(limit)],
    )


def quarantine_summary(warehouse: Path) -> list[dict[str, Any]]:
    """Rows refused by staging, counted per table and reason."""
    return run_query(
        warehouse,
        """select source_table, reject_reason, count(*) as rows, max(_loaded_at) as last_loaded_at
           from staging.stg_quarantine
           group by source_table, reject_reason
           order by rows desc, source_table, reject_reason""",
    )


# -- live model quality and drift (monitoring.*, docs/model-ops.md) ---------------------


def model_quality(
    warehouse: Path, *, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """Per day and model version (champion, challenger): alerts, precision and recall at
    the threshold, PR-AUC, frauds labelled so far and the day's label maturity."""
    where, params = _range("day", start, end)
    return run_query(
        warehouse,
        f"""select day, model_role, model_version, purchases, alerts, alert_rate,
                   labelled_frauds, true_positives, precision_at_threshold,
                   recall_at_threshold, pr_auc, label_maturity, as_of
            from monitoring.model_quality_daily {where}
            order by day, model_role, model_version""",
        params,
    )


def model_comparison(
    warehouse: Path, *, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """Champion vs challenger per day, on the purchases both scored."""
    where, params = _range("day", start, end)
    return run_query(
        warehouse,
        f"""select day, purchases, labelled_frauds, champion_version, challenger_version,
                   champion_alerts, challenger_alerts, champion_precision, challenger_precision,
                   champion_recall, challenger_recall, champion_pr_auc, challenger_pr_auc,
                   label_maturity
            from monitoring.model_comparison_daily {where}
            order by day, champion_version, challenger_version""",
        params,
    )


def score_drift(
    warehouse: Path, *, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """Per day and model version, the PSI of its scores against its training scores."""
    where, params = _range("day", start, end)
    return run_query(
        warehouse,
        f"""select day, model_version, model_role, purchases, psi
            from monitoring.score_drift_daily {where}
            order by day, model_version""",
        params,
    )


def feature_drift(
    warehouse: Path, *, day: date | None = None, model_version: str | None = None
) -> list[dict[str, Any]]:
    """One day's PSI and missing share per feature (default: the latest day, against the
    champion that scored it), highest PSI first."""
    return run_query(
        warehouse,
        """with latest as (
               select coalesce(cast(? as date), max(day)) as day from monitoring.feature_drift_daily
           ),
           version as (
               select coalesce(
                   cast(? as varchar),
                   (select max(q.model_version) from monitoring.model_quality_daily as q, latest
                    where q.day = latest.day and q.model_role = 'champion')
               ) as model_version
           )
           select d.day, d.model_version, d.feature, d.purchases, d.psi, d.missing_share,
                  d.reference_missing_share, d.importance_rank
           from monitoring.feature_drift_daily as d, latest, version
           where d.day = latest.day and d.model_version = version.model_version
           order by d.psi desc nulls last, d.feature""",
        [day, model_version],
    )


def latest_quality(warehouse: Path) -> list[dict[str, Any]]:
    """The latest day's quality rows (one per model version): what the metrics export."""
    return run_query(
        warehouse,
        """select day, model_role, model_version, precision_at_threshold, recall_at_threshold,
                  pr_auc, alert_rate, label_maturity, labelled_frauds
           from monitoring.model_quality_daily
           where day = (select max(day) from monitoring.model_quality_daily)
           order by model_role, model_version""",
    )


def latest_score_drift(warehouse: Path) -> list[dict[str, Any]]:
    """The latest day's score PSI per model version."""
    return run_query(
        warehouse,
        """select day, model_version, model_role, psi from monitoring.score_drift_daily
           where day = (select max(day) from monitoring.score_drift_daily)
           order by model_version""",
    )
