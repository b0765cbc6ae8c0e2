"""API keys: hashed at rest, constant-time comparison, demo keys refused outside demo
mode, the token bucket, and CORS closed unless configured."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shopsentry.api import security
from shopsentry.api.security import DEMO_KEYS, KeyStore, RateLimiter, format_token
from shopsentry.config import Settings
from shopsentry.errors import ConfigError


def test_keys_are_stored_hashed_never_in_clear(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    issued = store.create("ingest", "web")
    store.close()
    secret = issued.token.split("_", 2)[2]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in raw
    assert issued.token.encode() not in raw


def test_authenticate_checks_secret_role_source_and_revocation(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    web = store.create("ingest", "web")
    analyst = store.create("analyst")

    principal = store.authenticate(web.token)
    assert principal is not None and (principal.role, principal.source) == ("ingest", "web")
    assert principal.may_send("web") and not principal.may_send("pos")
    assert store.authenticate(web.token + "x") is None
    assert store.authenticate(format_token(web.key_id, "wrong")) is None
    assert store.authenticate(format_token(analyst.key_id, web.token.split("_", 2)[2])) is None
    assert store.revoke(web.key_id)
    assert store.authenticate(web.token) is None
    assert store.list()[0]["revoked_at"] is not None
    assert "digest" not in store.list()[0]


def test_comparison_is_constant_time_even_for_unknown_key_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(tmp_path / "keys.db")
    issued = store.create("analyst")
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert store.authenticate(issued.token) is not None
    assert store.authenticate("ssk_unknown_secret") is None
    assert store.authenticate("not-even-a-key") is None
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("role", "source"), [("root", None), ("ingest", None), ("ingest", "fax"), ("analyst", "web")]
)
def test_bad_key_requests_are_refused(tmp_path: Path, role: str, source: str | None) -> None:
    with pytest.raises(security.InvalidKeyRequest):
        KeyStore(tmp_path / "keys.db").create(role, source)


def test_a_key_name_a_review_could_not_carry_is_refused_at_creation(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    with pytest.raises(security.InvalidKeyRequest, match="at most 128 characters"):
        store.create("analyst", name="a" * 129)
    assert store.list() == []
    assert store.create("analyst", name="a" * 128).role == "analyst"


def test_service_refuses_to_start_with_demo_keys_outside_demo_mode(
    tmp_path: Path, log: Any
) -> None:
    from shopsentry.api import create_app

    demo = Settings(data_dir=tmp_path / "data", api={"demo_mode": True})
    app = create_app(demo, log=log, start_consumer=False)
    printed = {k.token for k in app.state.demo_keys}
    assert printed == {format_token(k, s) for k, s, _, _ in DEMO_KEYS}
    app.state.services.close()

    prod = Settings(data_dir=tmp_path / "data")
    with pytest.raises(ConfigError, match="demo API keys"):
        create_app(prod, log=log)

    store = KeyStore(tmp_path / "data" / "api" / "keys.db")
    assert store.revoke_demo_keys() == len(DEMO_KEYS)
    store.close()
    app = create_app(prod, log=log, start_consumer=False)
    with TestClient(app) as client:
        demo_analyst = format_token("demoana", "demo-analyst-key")
        assert client.get("/v1/alerts", headers={"X-API-Key": demo_analyst}).status_code == 401


def test_demo_keys_work_in_demo_mode_and_the_page_is_prefilled(tmp_path: Path, log: Any) -> None:
    from shopsentry.api import create_app

    settings = Settings(data_dir=tmp_path / "data", api={"demo_mode": True})
    with TestClient(create_app(settings, log=log, start_consumer=False)) as client:
        token = format_token("demoana", "demo-analyst-key")
        assert client.get("/v1/alerts", headers={"X-API-Key": token}).status_code == 200
        assert token in client.get("/dashboard").text


def test_secrets_are_never_logged(
    tmp_path: Path, log: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from shopsentry.api import create_app

    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path / "data", api={"demo_mode": True})
    store = KeyStore(tmp_path / "data" / "api" / "keys.db")
    issued = store.create("analyst")
    store.close()
    with TestClient(create_app(settings, log=log, start_consumer=False)) as client:
        client.get("/v1/alerts", headers={"X-API-Key": issued.token})
        client.get("/v1/alerts", headers={"X-API-Key": issued.token + "bad"})
    secrets = [issued.token.split("_", 2)[2]] + [s for _, s, _, _ in DEMO_KEYS]
    leaked = [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in secrets)]
    assert not leaked


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one per second, burst of 60
    assert all(limiter.acquire("k") == 0 for _ in range(60))
    wait = limiter.acquire("k")
    assert 0 < wait <= 1.0
    assert limiter.acquire("other") == 0
    now[0] += 2.0
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") > 0


def test_cors_is_closed_by_default_and_open_only_to_configured_origins(
    tmp_path: Path, log: Any
) -> None:
    from shopsentry.api import create_app

    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with TestClient(
        create_app(Settings(data_dir=tmp_path / "a"), log=log, start_consumer=False)
    ) as client:
        response = client.options("/v1/events", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        got = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in got.headers

    settings = Settings(data_dir=tmp_path / "b", api={"cors_origins": ["https://shop.example"]})
    with TestClient(create_app(settings, log=log, start_consumer=False)) as client:
        ok = client.options("/v1/events", headers={**preflight, "Origin": "https://shop.example"})
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        evil = client.options("/v1/events", headers=preflight)
        assert evil.headers.get("access-control-allow-origin") != "https://evil.example"
