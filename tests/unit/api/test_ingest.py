"""POST /v1/events: durable writes, keys and roles, size bounds, validation, rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import Keys, make_keys, purchase_json, read_topic


def behaviour_json(
    event_id: str, *, user_id: str = "user-2", source: str = "web"
) -> dict[str, Any]:
    return {
        "event_type": "page_view",
        "event_id": event_id,
        "source": source,
        "user_id": user_id,
        "occurred_at": "2026-11-20T12:00:00+00:00",
        "page": "/cart",
    }


def test_single_purchase_is_durable_in_purchase_events_keyed_by_user(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    response = client.post("/v1/events", json=purchase_json("ev-a"), headers=keys.header(keys.web))

    assert response.status_code == 202
    assert response.json() == {
        "accepted": 1,
        "event_ids": ["ev-a"],
        "topics": {"purchase-events": 1},
        "duplicates": [],
    }
    records = read_topic(log, api_settings.topics.purchase_events.name)
    assert [r.key for r in records] == [b"user-1"]
    assert orjson.loads(records[0].value)["event_id"] == "ev-a"


def test_batch_routes_purchases_and_behaviour_to_their_topics(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    batch = [
        purchase_json("ev-1"),
        behaviour_json("ev-2"),
        behaviour_json("ev-3", user_id="user-3"),
    ]
    response = client.post("/v1/events", json=batch, headers=keys.header(keys.web))

    assert response.status_code == 202
    assert response.json()["topics"] == {"purchase-events": 1, "user-behavior": 2}
    behaviour = read_topic(log, api_settings.topics.user_behavior.name)
    assert sorted(orjson.loads(r.value)["event_id"] for r in behaviour) == ["ev-2", "ev-3"]
    assert {r.key for r in behaviour} == {b"user-2", b"user-3"}


def test_missing_or_wrong_key_is_401(client: TestClient, keys: Keys) -> None:
    assert client.post("/v1/events", json=purchase_json()).status_code == 401
    wrong = keys.web[:-4] + "AAAA"
    assert (
        client.post("/v1/events", json=purchase_json(), headers=Keys.header(wrong)).status_code
        == 401
    )
    assert (
        client.post("/v1/events", json=purchase_json(), headers=Keys.header("garbage")).status_code
        == 401
    )
    bearer = {"Authorization": f"Bearer {keys.web}"}
    assert client.post("/v1/events", json=purchase_json(), headers=bearer).status_code == 202


def test_key_of_another_source_or_role_is_403_and_nothing_is_written(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    pos_event = purchase_json("ev-pos", source="pos")
    response = client.post(
        "/v1/events", json=[purchase_json("ev-ok"), pos_event], headers=keys.header(keys.web)
    )
    assert response.status_code == 403
    assert "source=pos" in response.json()["detail"]
    assert (
        client.post(
            "/v1/events", json=purchase_json(), headers=keys.header(keys.analyst)
        ).status_code
        == 403
    )
    assert read_topic(log, api_settings.topics.purchase_events.name) == []

    assert (
        client.post("/v1/events", json=pos_event, headers=keys.header(keys.pos)).status_code == 202
    )
    assert (
        client.post("/v1/events", json=pos_event, headers=keys.header(keys.admin)).status_code
        == 202
    )


def test_invalid_events_are_422_with_field_and_reason(client: TestClient, keys: Keys) -> None:
    single = client.post("/v1/events", json=purchase_json(amount=-5), headers=keys.header(keys.web))
    assert single.status_code == 422
    assert single.json()["errors"][0]["field"] == "amount"
    assert single.json()["errors"][0]["reason"]

    batch = [
        purchase_json("ev-1"),
        purchase_json("ev-2", country="usa"),
        {"event_type": "teleport"},
    ]
    response = client.post("/v1/events", json=batch, headers=keys.header(keys.web))
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["index"] == 1 and e["field"] == "country" for e in errors)
    assert any(e["index"] == 2 and e["field"] == "event_type" for e in errors)
    assert all(e["index"] != 0 for e in errors)


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{not json", "(body)"), (b"[]", "(body)"), (b"[1, 2]", "(event)"), (b'"text"', "(event)")],
)
def test_malformed_bodies_are_422(client: TestClient, keys: Keys, body: bytes, field: str) -> None:
    headers = {**keys.header(keys.web), "Content-Type": "application/json"}
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_oversized_body_is_413_by_content_length(
    client: TestClient, keys: Keys, api_settings: Settings
) -> None:
    limit = api_settings.api.max_body_bytes
    body = orjson.dumps([purchase_json(f"ev-{i}") for i in range(limit // 200 + 10)])
    assert len(body) > limit
    response = client.post("/v1/events", content=body, headers=keys.header(keys.web))
    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert 'route="unmatched",status="413"' in client.get("/metrics").text


def test_oversized_streamed_body_without_length_is_413(
    client: TestClient, keys: Keys, api_settings: Settings, log: Any
) -> None:
    chunk = b" " * 65536

    def body() -> Iterator[bytes]:
        yield b"["
        for _ in range(api_settings.api.max_body_bytes // len(chunk) + 2):
            yield chunk
        yield b"]"

    response = client.post("/v1/events", content=body(), headers=keys.header(keys.web))
    assert response.status_code == 413
    assert read_topic(log, api_settings.topics.purchase_events.name) == []


def test_rate_limit_is_per_key_with_retry_after(tmp_path: Path, log: Any) -> None:
    from shopsentry.api import create_app

    settings = Settings(
        data_dir=tmp_path / "data", log_fsync="never", api={"rate_limit_per_minute": 3}
    )
    keys = make_keys(settings)
    with TestClient(create_app(settings, log=log, start_consumer=False)) as client:
        codes = [
            client.post(
                "/v1/events", json=purchase_json(f"ev-{i}"), headers=keys.header(keys.web)
            ).status_code
            for i in range(4)
        ]
        assert codes == [202, 202, 202, 429]
        limited = client.post(
            "/v1/events", json=purchase_json("ev-x"), headers=keys.header(keys.web)
        )
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        # Another key has its own bucket.
        other = client.post(
            "/v1/events", json=purchase_json("ev-p", source="pos"), headers=keys.header(keys.pos)
        )
        assert other.status_code == 202


def test_ingest_is_counted_in_metrics(client: TestClient, keys: Keys) -> None:
    client.post(
        "/v1/events",
        json=[purchase_json("ev-1"), behaviour_json("ev-2")],
        headers=keys.header(keys.web),
    )
    text = client.get("/metrics").text
    assert 'shopsentry_api_events_ingested_total{source="web",topic="purchase-events"} 1.0' in text
    assert 'shopsentry_api_events_ingested_total{source="web",topic="user-behavior"} 1.0' in text
    assert (
        'shopsentry_api_requests_total{method="POST",route="/v1/events",status="202"} 1.0' in text
    )


def test_a_batch_over_the_event_limit_is_413_before_validation(
    client: TestClient, keys: Keys, api_settings: Settings, log: Any
) -> None:
    limit = api_settings.api.max_events_per_request
    body = b"[" + b",".join([b"{}"] * 340_000) + b"]"  # ~1 MiB of empty events
    assert len(body) <= api_settings.api.max_body_bytes
    response = client.post(
        "/v1/events",
        content=body,
        headers={**keys.header(keys.web), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert f"at most {limit} events" in response.json()["detail"]
    assert len(response.content) < 1000
    assert read_topic(log, api_settings.topics.purchase_events.name) == []


def test_errors_are_capped_with_a_count(
    client: TestClient, keys: Keys, api_settings: Settings
) -> None:
    cap = api_settings.api.max_errors_reported
    batch = [{"event_type": "purchase"}] * 200  # each misses many fields
    response = client.post("/v1/events", json=batch, headers=keys.header(keys.web))
    assert response.status_code == 422
    body = response.json()
    assert len(body["errors"]) == cap
    assert body["error_count"] > 200
    assert f"and {body['error_count'] - cap} more" in body["detail"]


def test_deeply_nested_values_are_422_naming_the_field(client: TestClient, keys: Keys) -> None:
    nested = b"[" * 1000 + b"]" * 1000
    body = orjson.dumps(purchase_json("ev-deep", merchant_category=None)).replace(
        b'"merchant_category":null', b'"merchant_category":' + nested
    )
    response = client.post(
        "/v1/events",
        content=body,
        headers={**keys.header(keys.web), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "merchant_category"


def test_a_retried_event_id_is_acknowledged_and_written_once(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    first = client.post("/v1/events", json=purchase_json("ev-r"), headers=keys.header(keys.web))
    retry = client.post(
        "/v1/events",
        json=[purchase_json("ev-r"), purchase_json("ev-s"), purchase_json("ev-s")],
        headers=keys.header(keys.web),
    )
    assert first.status_code == retry.status_code == 202
    assert retry.json()["accepted"] == 1
    assert retry.json()["duplicates"] == ["ev-r"]
    records = read_topic(log, api_settings.topics.purchase_events.name)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == ["ev-r", "ev-s"]
    assert "shopsentry_api_events_duplicate_total 2.0" in client.get("/metrics").text


def test_the_memory_of_recent_ids_is_bounded() -> None:
    from shopsentry.api.recent import RecentIds

    recent = RecentIds(3)
    recent.add_all(["a", "b", "c"])
    recent.add_all(["a", "d"])  # "a" is refreshed, "b" is the oldest and goes
    assert len(recent) == 3
    assert "b" not in recent and all(i in recent for i in ("a", "c", "d"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "12.5"),
        ("amount", True),
        ("item_count", True),
        ("item_count", 2.5),
        ("occurred_at", 0),
        ("occurred_at", 1_700_000_000),
        ("occurred_at", "1900-01-01T00:00:00+00:00"),
        ("occurred_at", "2999-01-01T00:00:00+00:00"),
    ],
)
def test_lax_types_and_absurd_dates_are_refused(
    client: TestClient, keys: Keys, field: str, value: Any
) -> None:
    response = client.post(
        "/v1/events", json=purchase_json(**{field: value}), headers=keys.header(keys.web)
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_whole_numbers_are_still_amounts(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/events", json=purchase_json(amount=12), headers=keys.header(keys.web)
    )
    assert response.status_code == 202


def test_healthz_answers_while_a_large_batch_is_being_validated(
    api_settings: Settings, log: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation of a large body is held until /healthz has answered: that can only
    happen when validation runs off the event loop (on it, the hold times out first)."""
    import asyncio
    import threading

    import httpx

    from shopsentry.api import create_app, events

    app = create_app(api_settings, log=log, start_consumer=False)
    validating, healthz_answered = threading.Event(), threading.Event()
    released: list[bool] = []
    real_decode = events.decode

    def held_decode(raw: bytes, **kwargs: Any) -> Any:
        if not validating.is_set():
            validating.set()
            released.append(healthz_answered.wait(timeout=30))
        return real_decode(raw, **kwargs)

    monkeypatch.setattr(events, "decode", held_decode)
    batch = [purchase_json(f"ev-{i}") for i in range(api_settings.api.max_events_per_request)]

    async def scenario() -> tuple[int, bool, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            ingest = asyncio.create_task(
                http.post("/v1/events", json=batch, headers=keys.header(keys.web), timeout=60)
            )
            await asyncio.to_thread(validating.wait, 30)
            health = await http.get("/healthz", timeout=60)
            ingest_done_first = ingest.done()
            healthz_answered.set()
            return health.status_code, ingest_done_first, (await ingest).status_code

    health_code, ingest_done_first, ingest_code = asyncio.run(scenario())
    assert released == [True], "validation blocked the event loop: /healthz could not answer"
    assert health_code in (200, 503) and not ingest_done_first
    assert ingest_code == 202
