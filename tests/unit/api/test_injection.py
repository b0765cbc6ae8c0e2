"""SQL injection strings through every query and path parameter of every endpoint.

The parameters are enumerated from the app's own OpenAPI document, so an endpoint or a
parameter added later is covered without editing this test. Nothing may break (no
5xx), nothing may leak (a string filter that matches nothing returns nothing), and the
store must be intact afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import Keys, caught_up, publish, scored, wait_for

INJECTIONS = (
    "' OR 1=1 --",
    "'; DROP TABLE alerts; --",
    '" OR ""="',
    "1; select * from api_keys",
    "alert-ev-0000' UNION SELECT digest, role, source, name FROM api_keys --",
    "%' OR '%'='",
    "\\'; --",
)


def operations(client: TestClient) -> list[tuple[str, str, list[dict[str, Any]]]]:
    spec = client.app.openapi()  # type: ignore[attr-defined]
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            params = [p for p in op.get("parameters", []) if p["in"] in ("query", "path")]
            if params:
                found.append((method.upper(), path, params))
    return found


@pytest.fixture
def populated(client: TestClient, log: Any, api_settings: Settings) -> TestClient:
    publish(log, api_settings, [scored(i, user_id=f"user-{i % 2}") for i in range(6)])
    wait_for(lambda: caught_up(log, "api-alerts"), "store consumer")
    return client


def test_every_parameter_is_covered(populated: TestClient) -> None:
    covered = {(m, p, q["name"]) for m, p, params in operations(populated) for q in params}
    # The endpoints that take caller input through the URL are all in the sweep.
    for expected in [
        ("GET", "/v1/alerts", "user_id"),
        ("GET", "/v1/alerts", "status"),
        ("GET", "/v1/alerts", "cursor"),
        ("GET", "/v1/alerts", "since"),
        ("GET", "/v1/alerts/{alert_id}", "alert_id"),
        ("POST", "/v1/alerts/{alert_id}/review", "alert_id"),
        ("GET", "/v1/analytics/daily-sales", "start"),
        ("GET", "/v1/analytics/fraud-kpis", "end"),
        ("GET", "/v1/dashboard/summary", "window_minutes"),
    ]:
        assert expected in covered


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_through_every_parameter(populated: TestClient, keys: Keys, payload: str) -> None:
    client = populated
    headers = keys.header(keys.admin)
    store = client.app.state.services.store  # type: ignore[attr-defined]
    before = store.query("select count(*), sum(status = 'open') from alerts")[0]

    for method, path, params in operations(client):
        for param in params:
            url = path
            query: dict[str, str] = {}
            for p in params:
                if p["in"] == "path":
                    value = payload if p is param else "alert-ev-0000"
                    url = url.replace("{" + p["name"] + "}", value.replace("/", "%2F"))
            if param["in"] == "query":
                query[param["name"]] = payload
            body = {"verdict": "false_positive", "note": payload} if method == "POST" else None
            response = client.request(method, url, params=query, json=body, headers=headers)
            where = f"{method} {path} {param['name']}={payload!r}"
            assert response.status_code < 500, f"{where} -> {response.status_code} {response.text}"
            assert response.status_code in (200, 404, 422, 503), where
            text = response.text
            assert "digest" not in text and "ssk_" not in text, f"{where} leaked key data"
            if response.status_code == 200 and path == "/v1/alerts":
                # A filter that matches nothing must return nothing, never "everything".
                assert response.json()["total"] == 0, where

    after = store.query("select count(*), sum(status = 'open') from alerts")[0]
    assert after == before
    assert client.get("/v1/alerts", headers=headers).json()["total"] == 6


def test_injection_in_a_review_note_is_stored_verbatim(populated: TestClient, keys: Keys) -> None:
    note = "'); DELETE FROM alerts; --"
    h = keys.header(keys.analyst)
    response = populated.post(
        "/v1/alerts/alert-ev-0001/review",
        json={"verdict": "confirmed_fraud", "note": note},
        headers=h,
    )
    assert response.status_code == 200
    assert populated.get("/v1/alerts/alert-ev-0001", headers=h).json()["note"] == note
    assert populated.get("/v1/alerts", headers=h).json()["total"] == 6


def test_injection_in_the_api_key_is_just_a_bad_key(populated: TestClient) -> None:
    for payload in INJECTIONS:
        for token in (payload, f"ssk_{payload}_x", f"ssk_demoana_{payload}"):
            assert populated.get("/v1/alerts", headers={"X-API-Key": token}).status_code == 401
