"""Outputs of the hot path: decisions, fraud alerts and dead letters, as ready-to-send records.

Decisions and alerts are the schema's :class:`~shopsentry.events.schema.Decision` and
:class:`~shopsentry.events.schema.FraudAlert` (the one definition of the wire format),
built with :func:`~shopsentry.events.schema.trusted` (no per-event validation, about 10x
cheaper) and written with :func:`~shopsentry.events.schema.wire_json`; a unit test
validates the bytes with the schema's TypeAdapters. Their ``event_id`` is the
purchase's and ``alert_id`` is derived from it, so every output is deterministic per
input: a redelivery re-emits the same ids and readers deduplicate on ``event_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from shopsentry.bus.base import Record
from shopsentry.events.schema import (
    SCHEMA_VERSION,
    Band,
    Decision,
    FeatureContribution,
    FraudAlert,
    Purchase,
    band_for,
    severity_for,
    trusted,
    wire_json,
)

if TYPE_CHECKING:
    from shopsentry.detection.hot_path import BatchOutcome
    from shopsentry.detection.model_reload import ScoringModel
    from shopsentry.rules.engine import Verdicts


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] | None = None


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    decisions_topic: str
    alerts_topic: str
    dead_letter_topic: str
    threshold: float
    decline_threshold: float
    top_features: int


def dead_letter(cfg: RoutingConfig, record: Record, reason: str, stage: str) -> OutRecord:
    """The original key and bytes, with Kafka Connect style ``dlq.*`` headers."""
    one_line = " ".join(reason.split())[:1000]
    headers = (
        ("dlq.reason", one_line.encode()),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.stage", stage.encode()),
    )
    return OutRecord(cfg.dead_letter_topic, record.key, record.value, headers)


def _contributions(items: Sequence[Any]) -> tuple[FeatureContribution, ...]:
    result = []
    for item in items:
        value = getattr(item, "value", None)
        if value is not None:
            value = float(value)
            if value != value:  # NaN: "missing", which the schema spells null
                value = None
        result.append(
            trusted(
                FeatureContribution,
                name=str(item.name),
                value=value,
                contribution=float(item.contribution),
            )
        )
    return tuple(result)


def route_decisions(
    out: BatchOutcome,
    decided: Sequence[tuple[Record, Purchase]],
    X: np.ndarray,
    probs: np.ndarray,
    scorer: ScoringModel,
    cfg: RoutingConfig,
    latency_ms: dict[str, float],
    started_ms: int,
    verdicts: Verdicts | None = None,
    rule_set_version: int | None = None,
) -> None:
    """Append a decision per purchase (and an alert unless approved) to ``out``; with
    ``verdicts``, the rules' and lists' precedence decides the band (docs/rules.md)."""
    threshold, decline = cfg.threshold, cfg.decline_threshold
    flagged = np.flatnonzero(probs >= threshold)
    explained: dict[int, tuple[FeatureContribution, ...]] = {}
    if cfg.top_features > 0 and flagged.size:
        for i, contribs in zip(
            flagged.tolist(), scorer.explain(X[flagged], cfg.top_features), strict=True
        ):
            explained[i] = _contributions(contribs)
    decided_at = datetime.now(UTC)
    version = scorer.version
    outputs = out.outputs
    bands = out.bands
    severities = out.severities
    decisions_topic, alerts_topic = cfg.decisions_topic, cfg.alerts_topic
    for i, ((record, p), prob) in enumerate(zip(decided, probs.tolist(), strict=True)):
        model_band: Band = band_for(prob, threshold, decline)
        band = model_band
        rules: dict[str, Any] = {
            "rule_set_version": rule_set_version,
            "rules_fired": (),
            "shadow_rules_fired": (),
            "list_hits": (),
            "model_band": model_band,
        }
        if verdicts is not None:
            band = verdicts.final_band(i, model_band)
            rules["rules_fired"] = verdicts.rules_fired[i]
            rules["shadow_rules_fired"] = verdicts.shadow_fired[i]
            rules["list_hits"] = verdicts.list_hits[i]
        bands[band] = bands.get(band, 0) + 1
        top = explained.get(i, ())
        event_latency = dict(latency_ms)
        event_latency["queue"] = float(max(0, started_ms - record.timestamp_ms))
        shared = {  # the fields a decision and its alert carry alike
            "schema_version": SCHEMA_VERSION,
            "event_id": p.event_id,
            "source": p.source,
            "user_id": p.user_id,
            "occurred_at": p.occurred_at,
            "order_id": p.order_id,
            "amount": p.amount,
            "currency": p.currency,
            "probability": prob,
            "band": band,
            "model_version": version,
            "top_features": top,
            "decided_at": decided_at,
            **rules,
        }
        decision = trusted(
            Decision,
            event_type="decision",
            threshold=threshold,
            latency_ms=event_latency,
            **shared,
        )
        outputs.append(OutRecord(decisions_topic, record.key, wire_json(decision)))
        if band != "approve":
            # A rule can alert below the threshold: its severity is the band's floor.
            severity = severity_for(max(prob, threshold), threshold)
            if band == "decline" and model_band != "decline":
                severity = "high" if severity == "medium" else severity
            severities[severity] = severities.get(severity, 0) + 1
            alert = trusted(
                FraudAlert,
                event_type="fraud_alert",
                alert_id="alert-" + p.event_id,
                severity=severity,
                **shared,
            )
            outputs.append(OutRecord(alerts_topic, record.key, wire_json(alert)))
