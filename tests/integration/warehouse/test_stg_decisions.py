"""The challenger's fields on decisions reach staging.stg_decisions (null when a decision
has none), also in a warehouse built before the columns existed."""

from __future__ import annotations

import orjson
import pytest

from shopsentry.warehouse.db import connect
from tests.unit.warehouse.factories import EventSet, make_events

from .test_dbt_warehouse import produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHALLENGER_COLUMNS = (
    "challenger_version",
    "challenger_probability",
    "challenger_band",
    "served_by",
)


def with_challenger(events: EventSet, every: int = 2) -> dict[str, tuple]:
    """Give every ``every``-th decision a challenger's score; returns what each carries."""
    expected: dict[str, tuple] = {}
    rows = []
    for i, (key, value) in enumerate(events.by_topic["decisions"]):
        data = orjson.loads(value)
        if i % every == 0:
            served = "challenger" if i % 4 == 0 else "champion"
            data |= {
                "challenger_version": "2",
                "challenger_probability": 0.25,
                "challenger_band": "approve",
                "served_by": served,
            }
            expected[data["event_id"]] = ("2", 0.25, "approve", served)
        else:
            expected[data["event_id"]] = (None, None, None, None)
        rows.append((key, orjson.dumps(data)))
    events.by_topic["decisions"] = rows
    return expected


def staged(settings) -> dict[str, tuple]:
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            f"select event_id, {', '.join(CHALLENGER_COLUMNS)} from staging.stg_decisions"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_challenger_fields_are_staged_and_null_when_absent(settings) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl

    events = make_events()
    expected = with_challenger(events)
    produce(settings, events.by_topic)
    hourly_etl(settings)
    assert staged(settings) == expected


def test_a_warehouse_built_before_the_columns_gains_them(settings) -> None:
    from shopsentry.pipelines.hourly_etl import hourly_etl

    first = make_events(purchases=20, seed=1)
    produce(settings, first.by_topic)
    hourly_etl(settings)
    with connect(settings.warehouse_path) as con:  # as an older release built it
        for column in CHALLENGER_COLUMNS:
            con.execute(f"alter table staging.stg_decisions drop column {column}")
    later = make_events(purchases=20, seed=2, start=first.purchases[-1].occurred_at)
    later.by_topic = {
        "decisions": [
            (k, v.replace(b'"p0', b'"q0')) for k, v in later.by_topic["decisions"]
        ]  # new event ids, purchases not needed for staging
    }
    expected = with_challenger(later, every=1)
    produce(settings, later.by_topic)
    hourly_etl(settings)
    rows = staged(settings)
    assert {k: rows[k] for k in expected} == expected
    old = {k: v for k, v in rows.items() if k not in expected}
    assert len(old) == 20 and set(old.values()) == {(None, None, None, None)}
