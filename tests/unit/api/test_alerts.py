"""The alert store fed from the log, the alert API (filters, paging, detail) and reviews."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import T0, Keys, caught_up, publish, read_topic, scored, wait_for


def feed(client: TestClient, log: Any, settings: Settings, items: list[Any]) -> None:
    """Publish and wait until the service's consumer group has read to the end of the log."""
    publish(log, settings, items)
    wait_for(lambda: caught_up(log, "api-alerts"), "the store consumer to catch up")


def test_alerts_arrive_from_the_log_and_are_deduplicated(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    items = [scored(i, probability=0.9) for i in range(3)] + [scored(3, probability=0.2)]
    feed(client, log, api_settings, items)
    # At-least-once delivery: the detector may publish the same alert again.
    feed(client, log, api_settings, [items[0]])

    page = client.get("/v1/alerts", headers=keys.header(keys.analyst)).json()
    assert page["total"] == 3
    assert [a["alert_id"] for a in page["items"]] == [
        "alert-ev-0002",
        "alert-ev-0001",
        "alert-ev-0000",
    ]
    assert page["items"][0]["top_features"][0]["name"] == "amount"
    assert page["items"][0]["status"] == "open"


def test_filters(client: TestClient, keys: Keys, log: Any, api_settings: Settings) -> None:
    items = [
        scored(0, user_id="alice", probability=0.99),
        scored(1, user_id="bob", probability=0.75),
        scored(2, user_id="alice", probability=0.8, at=T0 + timedelta(hours=2)),
    ]
    feed(client, log, api_settings, items)
    h = keys.header(keys.analyst)

    def ids(**params: str) -> list[str]:
        response = client.get("/v1/alerts", params=params, headers=h)
        assert response.status_code == 200, response.text
        return sorted(a["alert_id"] for a in response.json()["items"])

    assert ids(user_id="alice") == ["alert-ev-0000", "alert-ev-0002"]
    assert ids(severity="critical") == ["alert-ev-0000"]
    assert ids(since=(T0 + timedelta(hours=1)).isoformat()) == ["alert-ev-0002"]
    assert ids(until=(T0 + timedelta(hours=1)).isoformat()) == ["alert-ev-0000", "alert-ev-0001"]
    client.post("/v1/alerts/alert-ev-0001/review", json={"verdict": "false_positive"}, headers=h)
    assert ids(status="reviewed") == ["alert-ev-0001"]
    assert ids(status="open") == ["alert-ev-0000", "alert-ev-0002"]


def test_paging_by_offset_and_by_cursor_covers_every_alert_once(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    feed(client, log, api_settings, [scored(i) for i in range(7)])
    h = keys.header(keys.analyst)

    offset_ids = []
    for offset in range(0, 7, 3):
        page = client.get("/v1/alerts", params={"limit": 3, "offset": offset}, headers=h).json()
        assert page["total"] == 7
        offset_ids += [a["alert_id"] for a in page["items"]]

    cursor_ids: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        page = client.get("/v1/alerts", params=params, headers=h).json()
        cursor_ids += [a["alert_id"] for a in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        params = {"limit": 3, "cursor": page["next_cursor"]}

    expected = [f"alert-ev-{i:04d}" for i in reversed(range(7))]
    assert offset_ids == expected
    assert cursor_ids == expected
    assert pages == 3
    bad = client.get("/v1/alerts", params={"cursor": "not-a-cursor"}, headers=h)
    assert bad.status_code == 422


def test_detail_has_event_score_features_and_user_history(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    items = [scored(i, user_id="carol", probability=0.1 * i) for i in range(1, 10)]
    feed(client, log, api_settings, items)

    response = client.get("/v1/alerts/alert-ev-0009", headers=keys.header(keys.analyst))
    assert response.status_code == 200
    detail = response.json()
    assert detail["event"]["order_id"] == "order-ev-0009"
    assert detail["event"]["payment_method"] == "card"
    assert detail["probability"] == 0.9
    assert detail["decision"]["latency_ms"]["end_to_end"] == 49.0
    assert [f["name"] for f in detail["top_features"]] == [
        "amount",
        "amount_ratio",
        "account_age_days",
        "new_card",
    ]
    # In words, with the direction each pushed the score.
    amount = detail["event"]["amount"]
    assert [(f["text"], f["direction"]) for f in detail["top_features"]] == [
        (f"amount ${amount:.2f}, 12× this user's average", "raises"),
        (f"amount ${amount:.2f}, 12× this user's average", "raises"),
        ("account 3 minutes old", "raises"),
        ("a card this user has used", "lowers"),
    ]
    assert detail["decision"]["top_features"][2]["text"] == "account 3 minutes old"
    history = detail["history"]
    assert [h["event_id"] for h in history][:3] == ["ev-0009", "ev-0008", "ev-0007"]
    assert len(history) == 9
    assert {h["band"] for h in history} == {"approve", "review"}

    assert client.get("/v1/alerts/alert-nope", headers=keys.header(keys.analyst)).status_code == 404


def test_review_is_stored_published_and_feeds_the_false_positive_rate(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    feed(client, log, api_settings, [scored(i, user_id=f"u{i}") for i in range(4)])
    h = keys.header(keys.analyst)

    assert client.get("/v1/reviews/stats", headers=h).json()["false_positive_rate"] is None
    verdicts = {0: "confirmed_fraud", 1: "false_positive", 2: "confirmed_fraud"}
    for i, verdict in verdicts.items():
        response = client.post(
            f"/v1/alerts/alert-ev-{i:04d}/review",
            json={"verdict": verdict, "note": f"case {i}"},
            headers=h,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "reviewed"
        assert response.json()["verdict"] == verdict

    reviews = [orjson.loads(r.value) for r in read_topic(log, api_settings.topics.reviews.name)]
    assert sorted((r["alert_id"], r["verdict"]) for r in reviews) == [
        ("alert-ev-0000", "confirmed_fraud"),
        ("alert-ev-0001", "false_positive"),
        ("alert-ev-0002", "confirmed_fraud"),
    ]
    assert reviews[0]["event_id"].startswith("ev-") and reviews[0]["note"].startswith("case")

    stats = client.get("/v1/reviews/stats", headers=h).json()
    assert stats["reviewed"] == 3 and stats["open"] == 1
    assert abs(stats["false_positive_rate"] - 1 / 3) < 1e-9
    assert "shopsentry_false_positive_rate 0.333" in client.get("/metrics").text
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    windowed = client.get("/v1/reviews/stats", params={"since": later}, headers=h).json()
    assert (windowed["reviewed"], windowed["open"], windowed["false_positive_rate"]) == (0, 1, None)
    detail = client.get("/v1/alerts/alert-ev-0001", headers=h).json()
    assert detail["note"] == "case 1" and detail["reviewed_at"] is not None


def test_review_permissions_and_validation(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    feed(client, log, api_settings, [scored(0)])
    url = "/v1/alerts/alert-ev-0000/review"
    body = {"verdict": "false_positive"}

    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers=keys.header(keys.web)).status_code == 403
    assert client.get("/v1/alerts", headers=keys.header(keys.web)).status_code == 403
    bad = client.post(url, json={"verdict": "maybe"}, headers=keys.header(keys.analyst))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "verdict"
    extra = client.post(
        url, json={"verdict": "false_positive", "admin": True}, headers=keys.header(keys.analyst)
    )
    assert extra.status_code == 422
    missing = client.post(
        "/v1/alerts/alert-nope/review", json=body, headers=keys.header(keys.analyst)
    )
    assert missing.status_code == 404
    assert client.post(url, json=body, headers=keys.header(keys.admin)).status_code == 200
    assert read_topic(log, api_settings.topics.reviews.name)[0].key == b"user-1"


def test_store_survives_a_restart_without_double_counting(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    from shopsentry.api import create_app

    feed(client, log, api_settings, [scored(i) for i in range(3)])
    store = client.app.state.services.store  # type: ignore[attr-defined]
    traffic = store.query("select sum(count) from traffic")[0][0]
    assert traffic == 3
    # A second app on the same data dir whose consumer group starts from the beginning:
    # every record is delivered again, and the store must ignore all of them.
    app2 = create_app(api_settings, log=log)
    app2.state.services.consumer.group_id = "api-alerts-replay"  # a fresh group: replay all

    def replayed() -> bool:
        lags = log.group_lag("api-alerts-replay")
        return bool(lags) and all(
            p.committed is not None and p.lag == 0 for p in lags if p.end_offset
        )

    with TestClient(app2) as second:
        wait_for(replayed, "the replay group to reach the end of the log")
        assert app2.state.services.consumer.records_applied == 0
        assert second.get("/v1/alerts", headers=keys.header(keys.analyst)).json()["total"] == 3
        assert app2.state.services.store.query("select sum(count) from traffic")[0][0] == 3


def _cursor_of(decided_ms: int, alert_id: str = "alert-x") -> str:
    import base64

    return base64.urlsafe_b64encode(f"{decided_ms}|{alert_id}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/alerts?since=0001-01-01", "since"),
        ("/v1/alerts?until=0001-01-01", "until"),
        ("/v1/alerts?until=", "until"),
        ("/v1/alerts?since=9999-12-31T23:59:59", "since"),
        ("/v1/reviews/stats?since=0001-01-01", "since"),
        ("/v1/reviews/stats?since=", "since"),
        ("/v1/reviews/stats?since=1.434778344180991e-192", "since"),
        ("/v1/alerts?until=1700000000", "until"),
        (f"/v1/alerts?cursor={_cursor_of(2**63)}", "cursor"),
        (f"/v1/alerts?cursor={_cursor_of(-1)}", "cursor"),
    ],
)
def test_out_of_range_times_and_cursors_are_422_naming_the_field(
    client: TestClient, keys: Keys, url: str, field: str
) -> None:
    response = client.get(url, headers=keys.header(keys.analyst))
    assert response.status_code == 422, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert field in body["detail"]


def test_times_without_an_offset_are_utc(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    feed(client, log, api_settings, [scored(0)])
    naive = (T0 - timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    response = client.get(f"/v1/alerts?since={naive}", headers=keys.header(keys.analyst))
    assert response.status_code == 200
    assert response.json()["total"] == 1


def test_oversized_chunked_review_is_413_like_content_length(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    feed(client, log, api_settings, [scored(0)])
    url = "/v1/alerts/alert-ev-0000/review"
    headers = {**keys.header(keys.analyst), "Content-Type": "application/json"}
    big = b'{"verdict": "false_positive", "note": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    by_length = client.post(url, content=big, headers=headers)
    by_chunks = client.post(url, content=chunked(), headers=headers)
    assert (by_length.status_code, by_chunks.status_code) == (413, 413)
    assert by_chunks.json()["detail"] == by_length.json()["detail"]
    assert read_topic(log, api_settings.topics.reviews.name) == []


def test_an_alert_says_which_rules_decided_it(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    by_rule = scored(0, probability=0.3)
    assert by_rule.alert is None
    alert = scored(0, probability=0.9).alert
    assert alert is not None
    by_rule.alert = alert.model_copy(  # a rule blocked what the model would have approved
        update={
            "probability": 0.3,
            "band": "decline",
            "rule_set_version": 4,
            "rules_fired": ("block_new_card_velocity",),
            "shadow_rules_fired": ("trial_high_amount",),
            "list_hits": (),
            "model_band": "approve",
        }
    )
    feed(client, log, api_settings, [by_rule, scored(1, probability=0.9)])
    h = keys.header(keys.analyst)
    detail = client.get("/v1/alerts/alert-ev-0000", headers=h).json()
    assert detail["rules_fired"] == ["block_new_card_velocity"]
    assert detail["shadow_rules_fired"] == ["trial_high_amount"]
    assert (detail["rule_set_version"], detail["model_band"], detail["band"]) == (
        4,
        "approve",
        "decline",
    )
    by_model = client.get("/v1/alerts/alert-ev-0001", headers=h).json()
    assert by_model["rules_fired"] == [] and by_model["model_band"] is None
    listed = client.get("/v1/alerts", headers=h).json()["items"]
    assert {a["alert_id"]: a["rules_fired"] for a in listed} == {
        "alert-ev-0000": ["block_new_card_velocity"],
        "alert-ev-0001": [],
    }
