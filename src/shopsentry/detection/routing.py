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
    Severity,
    band_for,
    severity_for,
    trusted,
    wire_json,
)

if TYPE_CHECKING:
    from shopsentry.detection.challenger import ChallengerScores
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


def _explain(
    X: np.ndarray,
    acting: np.ndarray,
    scorer: ScoringModel,
    challenger: ChallengerScores | None,
    cfg: RoutingConfig,
) -> dict[int, tuple[FeatureContribution, ...]]:
    """Reason codes for the flagged rows, each from the model that decided it."""
    if cfg.top_features <= 0:
        return {}
    flagged = acting >= cfg.threshold
    groups: list[tuple[ScoringModel, np.ndarray]] = [(scorer, flagged)]
    if challenger is not None and challenger.serves is not None:
        serves = challenger.serves
        groups = [(scorer, flagged & ~serves), (challenger.model, flagged & serves)]
    explained: dict[int, tuple[FeatureContribution, ...]] = {}
    for model, mask in groups:
        rows = np.flatnonzero(mask)
        if rows.size:
            for i, contribs in zip(
                rows.tolist(), model.explain(X[rows], cfg.top_features), strict=True
            ):
                explained[i] = _contributions(contribs)
    return explained


# A decision's challenger fields when no challenger scored it.
_NO_CHALLENGER: dict[str, Any] = {
    "challenger_version": None,
    "challenger_probability": None,
    "challenger_band": None,
    "served_by": "champion",
}


def _challenger_rows(
    out: BatchOutcome, probs: np.ndarray, challenger: ChallengerScores, cfg: RoutingConfig
) -> list[tuple[dict[str, Any], Band | None, float]]:
    """Per purchase: the decision's challenger fields, and the challenger's band and
    probability where it decides (band None: the champion decides). Counts the band
    pairs and the purchases served into ``out``."""
    threshold, decline = cfg.threshold, cfg.decline_threshold
    version = challenger.version
    serves = challenger.serves.tolist() if challenger.serves is not None else None
    pairs = out.challenger_bands
    rows: list[tuple[dict[str, Any], Band | None, float]] = []
    for i, (prob, ch_prob) in enumerate(
        zip(probs.tolist(), challenger.probs.tolist(), strict=True)
    ):
        ch_band: Band = band_for(ch_prob, threshold, decline)
        pair = (band_for(prob, threshold, decline), ch_band)
        pairs[pair] = pairs.get(pair, 0) + 1
        served = serves is not None and serves[i]
        fields = {
            "challenger_version": version,
            "challenger_probability": ch_prob,
            "challenger_band": ch_band,
            "served_by": "challenger" if served else "champion",
        }
        rows.append((fields, ch_band if served else None, ch_prob))
        out.challenger_served += served
    return rows


def _rule_fields(
    verdicts: Verdicts | None, i: int, model_band: Band, rule_set_version: int | None
) -> tuple[Band, dict[str, Any]]:
    """Row ``i``'s final band and the decision's rule fields (the model's band stands
    when no rule set ran)."""
    band = model_band
    fired: tuple[str, ...] = ()
    shadow: tuple[str, ...] = ()
    hits: tuple[str, ...] = ()
    if verdicts is not None:
        band = verdicts.final_band(i, model_band)
        fired, shadow, hits = (
            verdicts.rules_fired[i], verdicts.shadow_fired[i], verdicts.list_hits[i]
        )  # fmt: skip
    return band, {
        "rule_set_version": rule_set_version,
        "rules_fired": fired,
        "shadow_rules_fired": shadow,
        "list_hits": hits,
        "model_band": model_band,
    }


def _severity(band: Band, model_band: Band, acting_prob: float, threshold: float) -> Severity:
    """An alert's severity. A rule can alert below the threshold: its severity is the
    band's floor; a rule's decline over the model's review is at least high."""
    severity = severity_for(max(acting_prob, threshold), threshold)
    if band == "decline" and model_band != "decline":
        severity = "high" if severity == "medium" else severity
    return severity


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
    challenger: ChallengerScores | None = None,
) -> None:
    """Append a decision per purchase (and an alert unless approved) to ``out``; with
    ``verdicts``, the rules' and lists' precedence decides the band (docs/rules.md);
    with ``challenger``, its score is recorded and, for the users it serves, its band
    is the model's band (docs/model-ops.md)."""
    threshold, decline = cfg.threshold, cfg.decline_threshold
    acting = probs if challenger is None else challenger.acting(probs)
    explained = _explain(X, acting, scorer, challenger, cfg)
    decided_at = datetime.now(UTC)
    version = scorer.version
    outputs = out.outputs
    bands = out.bands
    severities = out.severities
    decisions_topic, alerts_topic = cfg.decisions_topic, cfg.alerts_topic
    ch_rows = _challenger_rows(out, probs, challenger, cfg) if challenger is not None else None
    for i, ((record, p), prob) in enumerate(zip(decided, probs.tolist(), strict=True)):
        model_band: Band = band_for(prob, threshold, decline)
        acting_prob = prob
        ch_fields = _NO_CHALLENGER
        if ch_rows is not None:
            ch_fields, served_band, ch_prob = ch_rows[i]
            if served_band is not None:  # the challenger decides for this user
                model_band, acting_prob = served_band, ch_prob
        band, rules = _rule_fields(verdicts, i, model_band, rule_set_version)
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
            **ch_fields,
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
            severity = _severity(band, model_band, acting_prob, threshold)
            severities[severity] = severities.get(severity, 0) + 1
            alert = trusted(
                FraudAlert,
                event_type="fraud_alert",
                alert_id="alert-" + p.event_id,
                severity=severity,
                **shared,
            )
            outputs.append(OutRecord(alerts_topic, record.key, wire_json(alert)))
