"""The hand-built orjson outputs must be exactly what the Decision/FraudAlert schemas accept."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from shopsentry.bus.base import Record
from shopsentry.detection.hot_path import BatchOutcome
from shopsentry.detection.routing import RoutingConfig, dead_letter, route_decisions
from shopsentry.events.schema import ALERT, DECISION, band_for, severity_for

from .fakes import FakeScorer, purchase

CFG = RoutingConfig(
    "decisions",
    "fraud-alerts",
    "dead-letter",
    threshold=0.7,
    decline_threshold=0.95,
    top_features=2,
)


def _route(amounts: list[float]) -> tuple[BatchOutcome, FakeScorer]:
    decided = [
        (Record("purchase-events", 0, i, 1_000, b"u1", b""), purchase(i, amount=a))
        for i, a in enumerate(amounts)
    ]
    X = np.array([[a, i, 0] for i, a in enumerate(amounts)], dtype=np.float32)
    scorer = FakeScorer(version="7")
    probs = scorer.predict(X).astype(np.float64)
    out = BatchOutcome()
    route_decisions(out, decided, X, probs, scorer, CFG, {"parse": 0.1}, started_ms=1_005)
    return out, scorer


def test_decisions_and_alerts_validate_against_the_schemas() -> None:
    out, scorer = _route([10.0, 750.0, 990.0])
    decisions = [DECISION.validate_json(o.value) for o in out.outputs if o.topic == "decisions"]
    alerts = [ALERT.validate_json(o.value) for o in out.outputs if o.topic == "fraud-alerts"]
    assert [d.band for d in decisions] == ["approve", "review", "decline"]
    assert [d.event_id for d in decisions] == ["p-u1-0", "p-u1-1", "p-u1-2"]
    assert all(d.model_version == "7" for d in decisions)
    assert decisions[0].latency_ms["queue"] == 5.0 and decisions[0].latency_ms["parse"] == 0.1
    # Top features only for flagged rows, and the explainer only sees flagged rows.
    assert decisions[0].top_features == ()
    assert [f.name for f in decisions[1].top_features] == ["amount", "purchases_before"]
    assert decisions[1].top_features[0].value is None  # NaN → null
    assert scorer.explained_rows == 2
    assert [a.alert_id for a in alerts] == ["alert-p-u1-1", "alert-p-u1-2"]
    assert [a.severity for a in alerts] == [severity_for(0.75, 0.7), severity_for(0.99, 0.7)]
    assert out.bands == {"approve": 1, "review": 1, "decline": 1}
    assert sum(out.severities.values()) == 2


def test_output_matches_pydantic_serialisation_field_for_field() -> None:
    out, _ = _route([800.0])
    raw = orjson.loads(out.outputs[0].value)
    model = DECISION.validate_json(out.outputs[0].value)
    assert raw == orjson.loads(model.model_dump_json())
    assert list(raw) == list(orjson.loads(model.model_dump_json()))  # same field order


def test_bands_agree_with_band_for_at_the_edges() -> None:
    for p in (0.001, 0.6999, 0.7, 0.9499, 0.95, 1.0):
        amount = p * 1000
        out, _ = _route([amount])
        decision = DECISION.validate_json(out.outputs[0].value)
        assert decision.band == band_for(decision.probability, 0.7, 0.95)
        assert math.isclose(decision.probability, p, abs_tol=1e-6)


def test_dead_letter_keeps_original_bytes_and_key_with_headers() -> None:
    record = Record("purchase-events", 2, 41, 1, b"u9", b'{"bad": json\n')
    out = dead_letter(CFG, record, "amount: must be\n> 0", "decode")
    headers = dict(out.headers or ())
    assert out.topic == "dead-letter" and out.key == b"u9" and out.value == b'{"bad": json\n'
    assert headers == {
        "dlq.reason": b"amount: must be > 0",
        "dlq.topic": b"purchase-events",
        "dlq.partition": b"2",
        "dlq.offset": b"41",
        "dlq.stage": b"decode",
    }


def test_trusted_refuses_a_missing_or_unknown_field() -> None:
    from shopsentry.events.schema import FeatureContribution, trusted

    ok = trusted(FeatureContribution, contribution=0.5, name="amount", value=None)
    assert list(ok.model_dump()) == ["name", "value", "contribution"]  # the model's order
    with pytest.raises(KeyError):
        trusted(FeatureContribution, name="amount", value=None)
    with pytest.raises(KeyError):
        trusted(FeatureContribution, name="amount", value=None, contribution=0.5, typo=1)
