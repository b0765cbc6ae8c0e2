"""`/v1/rules` and `/v1/lists` against the real embedded log and control topic."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import Keys, caught_up, publish, scored, wait_for

H = Keys.header
DRAFT = {"name": "big_amount", "expression": "purchase.amount > 500.0", "action": "review"}


def test_an_analyst_saves_shadow_rules_and_only_an_admin_activates(
    client: TestClient, keys: Keys
) -> None:
    saved = client.post("/v1/rules", json=DRAFT, headers=H(keys.analyst))
    assert saved.status_code == 200, saved.text
    assert saved.json()["rule"]["mode"] == "shadow"
    version = saved.json()["version"]
    # read-your-writes: the answer's version is already what GET serves
    listed = client.get("/v1/rules", headers=H(keys.analyst)).json()
    assert listed["version"] == version
    assert [r["name"] for r in listed["rules"]] == ["big_amount"]

    active = client.post("/v1/rules", json={**DRAFT, "mode": "active"}, headers=H(keys.analyst))
    assert active.status_code == 403
    assert "shadow mode only" in active.json()["detail"]
    assert client.post("/v1/rules/big_amount/activate", headers=H(keys.analyst)).status_code == 403

    activated = client.post("/v1/rules/big_amount/activate", headers=H(keys.admin))
    assert activated.status_code == 200, activated.text
    assert activated.json()["rule"]["mode"] == "active"
    assert activated.json()["version"] == version + 1
    shadowed = client.post("/v1/rules/big_amount/shadow", headers=H(keys.analyst))
    assert shadowed.json()["rule"]["mode"] == "shadow"
    disabled = client.post("/v1/rules/big_amount/disable", headers=H(keys.analyst))
    assert disabled.json()["rule"]["enabled"] is False
    assert client.get("/v1/rules", headers=H(keys.web)).status_code == 403


def test_a_rule_that_does_not_compile_is_422_naming_expression_with_its_position(
    client: TestClient, keys: Keys
) -> None:
    bad = {**DRAFT, "expression": "purchase.amount > 500.0 &&\n  no_such_field == 1"}
    answer = client.post("/v1/rules", json=bad, headers=H(keys.admin))
    assert answer.status_code == 422
    error = answer.json()["errors"][0]
    assert error["field"] == "expression"
    assert error["reason"].startswith("line 2, column ")
    assert "no_such_field" in error["reason"]
    assert client.get("/v1/rules", headers=H(keys.admin)).json()["rules"] == []

    check = client.post("/v1/rules/check", json={"expression": bad["expression"]},
                        headers=H(keys.analyst)).json()  # fmt: skip
    assert check["ok"] is False and check["line"] == 2 and check["column"] >= 1
    ok = client.post("/v1/rules/check", json={"expression": "purchase.amount > 1.0"},
                     headers=H(keys.analyst)).json()  # fmt: skip
    assert ok == {"ok": True, "line": None, "column": None, "reason": None}


def test_every_change_is_audited_with_who_and_before_and_after(
    client: TestClient, keys: Keys
) -> None:
    client.post("/v1/rules", json=DRAFT, headers=H(keys.analyst))
    client.post("/v1/rules", json={**DRAFT, "expression": "purchase.amount > 900.0"},
                headers=H(keys.analyst))  # fmt: skip
    client.post("/v1/rules/big_amount/activate", headers=H(keys.admin))
    history = client.get("/v1/rules/big_amount/history", headers=H(keys.analyst))
    assert history.status_code == 200
    changes = history.json()["changes"]
    assert [c["action"] for c in changes] == ["save", "save", "activate"]
    first, second, third = changes
    assert first["before"] is None and first["after"]["expression"] == "purchase.amount > 500.0"
    assert second["before"]["expression"] == "purchase.amount > 500.0"
    assert second["after"]["expression"] == "purchase.amount > 900.0"
    assert third["before"]["mode"] == "shadow" and third["after"]["mode"] == "active"
    assert first["changed_by"] and third["changed_by"] != first["changed_by"]
    assert [c["version"] for c in changes] == sorted(c["version"] for c in changes)
    missing = client.get("/v1/rules/nothing_here/history", headers=H(keys.analyst))
    assert missing.status_code == 404


def test_list_entries_are_added_removed_and_imported_with_bad_rows_reported(
    client: TestClient, keys: Keys
) -> None:
    entry = {"list": "block", "entity": "card", "value": "card-1", "reason": "chargeback"}
    added = client.post("/v1/lists", json=entry, headers=H(keys.analyst))
    assert added.status_code == 200, added.text
    csv_text = (
        "list,entity,value,reason\n"
        "block,device,dev-1,bot farm\n"
        "block,planet,mars,not an entity\n"
        "allow,user,user-9,vip\n"
    )
    imported = client.post("/v1/lists/import", content=csv_text,
                           headers={**H(keys.analyst), "Content-Type": "text/csv"})  # fmt: skip
    assert imported.status_code == 200, imported.text
    body = imported.json()
    assert body["imported"] == 2
    assert len(body["rejected"]) == 1
    assert body["rejected"][0]["row"] == 3 and "entity" in body["rejected"][0]["reason"]
    live = client.get("/v1/lists", headers=H(keys.analyst)).json()
    assert live["version"] == body["version"]
    assert {e["value"] for e in live["entries"]} == {"card-1", "dev-1", "user-9"}

    removed = client.delete("/v1/lists/block/card/card-1", headers=H(keys.analyst))
    assert removed.status_code == 200, removed.text
    live = client.get("/v1/lists", headers=H(keys.analyst)).json()
    assert {e["value"] for e in live["entries"]} == {"dev-1", "user-9"}
    again = client.delete("/v1/lists/block/card/card-1", headers=H(keys.analyst))
    assert again.status_code == 404

    no_header = client.post("/v1/lists/import", content="a,b\n1,2\n",
                            headers={**H(keys.analyst), "Content-Type": "text/csv"})  # fmt: skip
    assert no_header.status_code == 422
    assert no_header.json()["errors"][0]["field"] == "body"


def test_backtest_is_503_until_the_warehouse_is_built(client: TestClient, keys: Keys) -> None:
    answer = client.post("/v1/rules/backtest", json={"expression": "purchase.amount > 1.0"},
                         headers=H(keys.analyst))  # fmt: skip
    assert answer.status_code == 503
    assert "warehouse" in answer.json()["detail"]
    bad = client.post("/v1/rules/backtest", json={"expression": "purchase.amount >"},
                      headers=H(keys.analyst))  # fmt: skip
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "expression"


def test_a_restarted_api_reads_the_rule_set_back_from_the_control_topic(
    client: TestClient, keys: Keys, api_settings, log
) -> None:
    from shopsentry.api import create_app

    version = client.post("/v1/rules", json=DRAFT, headers=H(keys.analyst)).json()["version"]
    with TestClient(create_app(api_settings, log=log)) as second:
        listed = second.get("/v1/rules", headers=H(keys.analyst)).json()
    assert listed["version"] == version
    assert listed["rules"][0]["name"] == "big_amount"


def test_backtest_reports_per_day_over_the_built_warehouse(
    client: TestClient, keys: Keys, api_settings
) -> None:
    import duckdb

    api_settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(api_settings.warehouse_path)) as c:
        c.execute("create schema ml_features; create schema staging")
        c.execute(
            """create table ml_features.training_set as select * from (values
            ('a1','u1','o1', 950.0, timestamp '2026-05-01 10:00', true, timestamp '2026-05-02'),
            ('a2','u2','o2',  15.0, timestamp '2026-05-01 11:00', false, null),
            ('a3','u3','o3', 700.0, timestamp '2026-05-02 09:00', false, null)
            ) t(event_id, user_id, order_id, amount, occurred_at, is_fraud, label_known_at)"""
        )
        c.execute("create table staging.stg_purchases as select 'a1' as event_id, 'US' as country")
        c.execute(
            "create table staging.stg_decisions as"
            " select 'a1' as event_id, 0.9 as probability, 'review' as band"
        )
    answer = client.post(
        "/v1/rules/backtest",
        json={"expression": "purchase.amount > 500.0", "action": "block", "since": "2026-05-01"},
        headers=H(keys.analyst),
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["total"]["purchases"] == 3 and report["total"]["hits"] == 2
    assert [d["day"] for d in report["days"]] == ["2026-05-01", "2026-05-02"]
    assert report["since"] == "2026-05-01"


def test_the_rule_list_counts_each_rules_hits_on_stored_decisions(
    client: TestClient, keys: Keys, log: Any, api_settings: Settings
) -> None:
    client.post("/v1/rules", json=DRAFT, headers=H(keys.analyst))
    client.post("/v1/rules/big_amount/activate", headers=H(keys.admin))
    client.post("/v1/rules", json={**DRAFT, "name": "draft_x"}, headers=H(keys.analyst))
    now = datetime.now(UTC)
    items = []
    for i in range(6):
        item = scored(i, probability=0.2, at=now - timedelta(seconds=10))
        fired = {
            "rules_fired": ("big_amount",) if i < 4 else (),
            "shadow_rules_fired": ("draft_x", "retired") if i % 2 else (),
        }
        items.append(replace(item, decision=item.decision.model_copy(update=fired)))
    old = scored(7, at=now - timedelta(hours=30))  # outside the default 24 h window
    items.append(
        replace(old, decision=old.decision.model_copy(update={"rules_fired": ("big_amount",)}))
    )
    publish(log, api_settings, items)
    publish(log, api_settings, items[:2])  # redelivered: counted once
    wait_for(lambda: caught_up(log, "api-alerts"), "the store consumer to catch up")

    listed = client.get("/v1/rules", headers=H(keys.analyst)).json()
    hits = {r["name"]: r["hits"] for r in listed["rules"]}
    assert hits == {
        "big_amount": {"active": 4, "shadow": 0, "total": 4},
        "draft_x": {"active": 0, "shadow": 3, "total": 3},
    }  # "retired" is in no rule set now: not listed
    assert datetime.fromisoformat(listed["hits_since"]) < now - timedelta(hours=23)
    wider = client.get("/v1/rules", params={"hits_hours": 48}, headers=H(keys.analyst)).json()
    assert {r["name"]: r["hits"]["total"] for r in wider["rules"]}["big_amount"] == 5
    bad = client.get("/v1/rules", params={"hits_hours": 0}, headers=H(keys.analyst))
    assert bad.status_code == 422 and "hits_hours" in bad.text
