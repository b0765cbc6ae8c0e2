"""Issue 13's simulated week: champion and challenger both score live (the challenger in
shadow), labels arrive late, the daily quality table shows both with each day's label
maturity, and an amount drift injected mid-week is singled out by the drift table, the
exported metric, Prometheus's alert rules (quiet before it, firing after) and the
dashboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shopsentry.warehouse.queries import run_query
from tests.integration.ops.prometheus_server import Prometheus

from .conftest import DRIFT_FROM, HISTORY_DAYS, LIVE_DAYS, START, Week

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIVE = [(START + timedelta(days=HISTORY_DAYS + i)).date() for i in range(LIVE_DAYS)]
BEFORE = [d for d in LIVE if d < DRIFT_FROM.date()]
AFTER = [d for d in LIVE if d >= DRIFT_FROM.date()]
# What tripling every amount moves: the amount itself and what is computed from it.
AMOUNT_DERIVED = re.compile(r"amount")


def rows(week: Week, sql: str, *params: Any) -> list[dict[str, Any]]:
    return run_query(week.settings.warehouse_path, sql, params)


def test_the_daily_quality_table_shows_the_live_week_with_maturity(week: Week) -> None:
    quality = rows(
        week,
        "select * from monitoring.model_quality_daily where day >= ? order by day, model_role",
        LIVE[0],
    )
    champion = [r for r in quality if r["model_role"] == "champion"]
    assert [r["day"] for r in champion] == LIVE
    assert {r["model_version"] for r in champion} == {week.champion}
    assert sum(r["purchases"] for r in champion) > 0
    for r in champion:
        assert 0 <= r["alerts"] <= r["purchases"]
        assert r["pr_auc"] is None or 0 <= r["pr_auc"] <= 1
        assert r["as_of"] == week.as_of.replace(tzinfo=None)
    maturity = [r["label_maturity"] for r in champion]
    assert all(m is not None and 0 <= m <= 1 for m in maturity), maturity
    # Older days have had longer for their chargebacks to arrive.
    assert maturity == sorted(maturity, reverse=True) and maturity[0] > maturity[-1]
    # Labels arrive late: at the week's end, fewer of its frauds are known than there were.
    known = sum(r["labelled_frauds"] for r in champion)
    assert 0 < known < week.frauds

    # The challenger scored the same purchases in shadow: its own rows, the same maturity.
    challenger = [r for r in quality if r["model_role"] == "challenger"]
    assert [r["day"] for r in challenger] == LIVE
    assert {r["model_version"] for r in challenger} == {week.challenger}
    for c, r in zip(challenger, champion, strict=True):
        assert c["purchases"] == r["purchases"] and c["label_maturity"] == r["label_maturity"]
        assert c["labelled_frauds"] == r["labelled_frauds"]  # one truth for both


def test_champion_and_challenger_side_by_side_on_the_same_purchases(week: Week) -> None:
    compared = rows(
        week,
        """select c.*, q.purchases as champion_purchases
           from monitoring.model_comparison_daily as c
           inner join monitoring.model_quality_daily as q
               on q.day = c.day and q.model_role = 'champion'
           where c.day >= ? order by c.day""",
        LIVE[0],
    )
    assert [r["day"] for r in compared] == LIVE
    for r in compared:
        assert (r["champion_version"], r["challenger_version"]) == (week.champion, week.challenger)
        assert r["purchases"] == r["champion_purchases"]  # shadow: every purchase scored twice
        assert r["label_maturity"] is not None
    # Two models, each judged on its own scores (not the champion's twice).
    pairs = [(r["champion_pr_auc"], r["challenger_pr_auc"]) for r in compared]
    assert any(c is not None and c != x for c, x in pairs), pairs


def test_the_injected_amount_drift_shows_from_mid_week_on(week: Week) -> None:
    drift = rows(
        week,
        """select day, feature, psi, importance_rank from monitoring.feature_drift_daily
           where model_version = ? and day >= ?""",
        week.champion,
        LIVE[0],
    )
    amount = {r["day"]: r["psi"] for r in drift if r["feature"] == "amount"}
    assert all(amount[d] < 0.1 for d in BEFORE), amount
    assert all(amount[d] > 0.2 for d in AFTER), amount
    scores = rows(
        week,
        "select day, model_version, psi from monitoring.score_drift_daily where day >= ?",
        LIVE[0],
    )
    score = {(r["model_version"], r["day"]): r["psi"] for r in scores}
    # Each model's live scores against its own reference: quiet (ScoreDriftHigh's 0.1)
    # until the drift, for the weaker challenger too; the champion's then past it.
    for version in (week.champion, week.challenger):
        assert all(score[version, d] < 0.1 for d in BEFORE), (version, score)
    assert all(score[week.champion, d] > 0.1 for d in AFTER), score


def _rule(name: str) -> str:
    path = Path(__file__).parents[3] / "deploy" / "prometheus" / "alerts.yml"
    rules = {r["alert"]: r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]}
    return str(rules[name]["expr"])


@contextmanager
def _prometheus_as_of(
    week: Week, live_server: Any, root: Path, as_of: datetime
) -> Iterator[tuple[Prometheus, str]]:
    """The week's monitoring as of ``as_of`` (the latest day is the day before),
    exported by the API and scraped by a real Prometheus evaluating the production
    rules (only ``for:`` shortened), once the drift is in; with the API's URL."""
    from shopsentry.api import create_app
    from shopsentry.pipelines.model_monitoring import model_monitoring
    from tests.integration.ops.airflow_server import free_port
    from tests.integration.ops.prometheus_server import running_prometheus

    moved = as_of != week.as_of
    if moved:
        model_monitoring(week.settings, as_of, drift=True)
    try:
        with live_server(create_app(week.settings)) as server:
            ports = {"serve": server.port, "detect": free_port(), "notify": free_port()}
            root.mkdir()
            prometheus = running_prometheus(root, ports)
            prom = next(prometheus)
            try:
                prom.wait(lambda: _scraped(prom, week) or None, "both models' drift to be scraped")
                yield prom, server.url
            finally:
                prometheus.close()
    finally:
        if moved:  # leave the warehouse as the fixture built it, for the other tests
            model_monitoring(week.settings, week.as_of, drift=True)


def _scraped(prom: Prometheus, week: Week) -> bool:
    """Both models' score drift and the champion's feature drift (what the API exports)."""
    scores = {r["metric"]["model_version"] for r in prom.query("shopsentry_score_psi")}
    features = {r["metric"]["model_version"] for r in prom.query("shopsentry_feature_psi")}
    return scores == {week.champion, week.challenger} and week.champion in features


def _evaluated_since(prom: Prometheus, since: str, names: tuple[str, ...]) -> dict[str, str] | None:
    """The rules' states once each was evaluated in a second after ``since``, else None."""
    body = httpx.get(f"{prom.url}/api/v1/rules", params={"type": "alert"}, timeout=10).json()
    rules = {r["name"]: r for g in body["data"]["groups"] for r in g["rules"]}
    if any(rules[n]["lastEvaluation"][:19] <= since for n in names):
        return None
    return {n: rules[n]["state"] for n in names}


def _firing(prom: Prometheus, name: str, label: str) -> set[str] | None:
    alerts = prom.query(f'ALERTS{{alertname="{name}",alertstate="firing"}}')
    return {r["metric"][label] for r in alerts} or None


def test_the_drift_alerts_stay_quiet_before_the_drift(
    week: Week, live_server: Any, tmp_path: Path
) -> None:
    """As of the last day before the drift, each model's scores are judged against its
    own training reference (the challenger's too), the champion's features against its
    reference, and neither drift rule holds."""
    names = ("FeatureDriftHigh", "ScoreDriftHigh")
    with _prometheus_as_of(week, live_server, tmp_path / "prometheus", DRIFT_FROM) as (prom, _):
        scores = {r["metric"]["role"]: r["value"][1] for r in prom.query("shopsentry_score_psi")}
        since = datetime.now(UTC)  # the drift is scraped by now: evaluations after see it
        states = prom.wait(
            lambda: _evaluated_since(prom, since.strftime("%Y-%m-%dT%H:%M:%S"), names),
            "both drift rules to be evaluated on the scraped drift",
        )
        assert states == {n: "inactive" for n in names}, (states, scores)
        for name in names:
            assert prom.query(_rule(name)) == [], (name, scores)
        assert prom.query('ALERTS{alertname=~"FeatureDriftHigh|ScoreDriftHigh"}') == []


def test_the_drift_alert_fires_for_the_drifted_feature_only(
    week: Week, live_server: Any, tmp_path: Path
) -> None:
    """As of the week's end: the drift rule fires for ``amount`` and what is computed
    from it, and for no other of the model's top-10 features; the champion's score
    drift fires too."""
    with _prometheus_as_of(week, live_server, tmp_path / "prometheus", week.as_of) as (prom, url):
        text = httpx.get(f"{url}/metrics", timeout=30).text
        assert re.search(r'shopsentry_feature_psi\{feature="amount",model_version="\d+"\}', text)
        assert re.search(r'shopsentry_model_precision\{model_version="\d+",role="champion"\}', text)
        assert "shopsentry_model_label_maturity{" in text
        condition = _rule("FeatureDriftHigh")
        drifted = prom.wait(
            lambda: {r["metric"]["feature"] for r in prom.query(condition)} or None,
            "the feature drift rule's expression to hold",
        )
        assert "amount" in drifted, drifted
        assert all(AMOUNT_DERIVED.search(f) for f in drifted), drifted
        firing = prom.wait(
            lambda: _firing(prom, "FeatureDriftHigh", "feature"), "FeatureDriftHigh to fire"
        )
        assert firing == drifted
        roles = prom.wait(lambda: _firing(prom, "ScoreDriftHigh", "role"), "ScoreDriftHigh to fire")
        assert "champion" in roles, roles


def test_the_dashboard_shows_quality_and_drift(
    week: Week, browser_page: Any, live_server: Any, artifact_dir: Path
) -> None:
    from shopsentry.api import create_app
    from tests.unit.api.factories import make_keys

    keys = make_keys(week.settings)
    page = browser_page
    with live_server(create_app(week.settings)) as server:
        page.goto(f"{server.url}/dashboard")
        page.fill("#api-key", keys.analyst)
        page.click("#key-form button")
        page.wait_for_selector("#quality-table tbody tr.role-champion", timeout=60_000)
        page.wait_for_selector('#drift-table tbody tr[data-feature="amount"]', timeout=60_000)
        quality = page.locator("#quality-table tbody tr").all_inner_texts()
        assert any(LIVE[-1].isoformat() in r and f"champion v{week.champion}" in r for r in quality)
        amount = page.locator('#drift-table tbody tr[data-feature="amount"]')
        assert "drifted" in (amount.get_attribute("class") or "")
        assert page.locator("#drift-day").inner_text().startswith(f"({LIVE[-1].isoformat()}")
        page.locator("section.modelops").screenshot(
            path=str(artifact_dir / "dashboard-modelops.png")
        )


def test_the_gate_judges_the_matured_days_and_explains_itself(week: Week) -> None:
    """The weekly retrain's live gate on the replayed month (every day scored by both
    models), with the warehouse's label maturity: it judges exactly the purchases of the
    days the warehouse shows at least 0.8 mature, leaves the live week's newest days
    out, and its reason (in the verdict and on the challenger's version) names that
    window. Last in the module: a promotion would move the aliases."""
    from mlflow import MlflowClient

    from shopsentry.models.live_gate import LiveGateConfig, apply_live_gate

    compared = rows(
        week,
        """select day, purchases, label_maturity from monitoring.model_comparison_daily
           where champion_version = ? and challenger_version = ? order by day""",
        week.champion,
        week.challenger,
    )
    matured = [
        r for r in compared if r["label_maturity"] is not None and r["label_maturity"] >= 0.8
    ]
    assert matured and matured[-1]["day"] < LIVE[-1], compared  # the newest days wait
    verdict = apply_live_gate(LiveGateConfig.from_settings(week.settings), week.as_of)
    assert verdict is not None, "champion and challenger are registered"
    assert verdict.scored_purchases == sum(r["purchases"] for r in compared)
    assert verdict.purchases == sum(r["purchases"] for r in matured) < verdict.scored_purchases
    assert (verdict.window_first, verdict.window_last) == (
        matured[0]["day"].isoformat(),
        matured[-1]["day"].isoformat(),
    )
    window = (
        f"matured window {matured[0]['day']}..{matured[-1]['day']}"
        f" ({len(matured)} of {len(compared)} days with label maturity >= 0.8)"
    )
    assert window in verdict.reason, verdict.reason
    mlc = MlflowClient(tracking_uri=week.settings.mlflow_tracking_uri)
    tags = mlc.get_model_version(week.settings.model.name, week.challenger).tags
    assert tags["live_gate_reason"] == verdict.reason
    assert tags["live_gate_promoted"] == str(verdict.promote).lower()

    # A day earlier, through the weekly retrain's call: the warehouse's maturity is as of
    # the week's end, so the monitoring models are rebuilt as of the gate's own time.
    from shopsentry.pipelines.model_monitoring import model_monitoring
    from shopsentry.pipelines.weekly_model_retrain import judge_live_challenger

    assert not verdict.promote  # the weak challenger is still the challenger
    earlier = week.as_of - timedelta(days=1)
    try:
        judged = judge_live_challenger(week.settings, earlier)
        built = rows(week, "select max(as_of) as as_of from monitoring.model_comparison_daily")
        assert built[0]["as_of"] == earlier.replace(tzinfo=None)
    finally:  # leave the warehouse as the fixture built it
        model_monitoring(week.settings, week.as_of, drift=False)
    assert judged is not None and judged["scored_purchases"] < verdict.scored_purchases
    assert judged["window_last"] is not None and judged["window_last"] <= verdict.window_last
