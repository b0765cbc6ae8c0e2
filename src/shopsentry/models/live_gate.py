"""Promotion from live evidence: the challenger against the champion on the purchases
both scored in production, judged on the labels known by now (docs/model-ops.md).

The rule (:func:`judge`, a pure function over arrays):

1. at least ``min_labelled_frauds`` of those purchases carry a fraud label known by
   ``as_of`` (a chargeback or an analyst's confirmation); fewer, and nothing is decided;
2. the recall to compare at is the champion's at the detector's threshold (the frauds
   it caught there);
3. each model's threshold is set to the highest one at which it catches at least that
   many of the labelled frauds (equal recall; for the champion that is its lowest
   caught fraud's score, so a copy of the champion ties), and the two precisions there
   are compared: the challenger is promoted only if it is better by more than
   ``min_precision_gain``.

A purchase without a fraud label known by ``as_of`` counts as legitimate: fraud still
to be charged back weighs on both models alike, since both are judged on the same rows.

:func:`live_evidence` is the thin warehouse query (``staging.stg_decisions`` joined with
``staging.stg_fraud_labels``); :func:`apply_live_gate` is what the weekly retrain calls:
it reads the aliases, judges, promotes or refuses, and says why in the log, on the
challenger's registry version (tags) and in its model card.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.warehouse.db import WarehouseError, WarehouseMissing

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from shopsentry.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveEvidence:
    """Row-level: one entry per purchase both versions scored live."""

    champion_version: str
    challenger_version: str
    is_fraud: NDArray[np.bool_]
    champion: NDArray[np.float64]
    challenger: NDArray[np.float64]


@dataclass(frozen=True)
class LiveVerdict:
    promote: bool
    reason: str
    purchases: int
    labelled_frauds: int
    champion_recall: float | None = None
    champion_precision: float | None = None
    champion_threshold: float | None = None
    challenger_recall: float | None = None
    challenger_precision: float | None = None
    challenger_threshold: float | None = None
    champion_version: str | None = None
    challenger_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_for_recall(
    is_fraud: NDArray[np.bool_], scores: NDArray[np.float64], caught: int
) -> float:
    """The highest threshold at which ``scores`` flag at least ``caught`` of the frauds."""
    fraud_scores = np.sort(scores[is_fraud])[::-1]
    return float(fraud_scores[caught - 1])


def _precision_recall(
    is_fraud: NDArray[np.bool_], flagged: NDArray[np.bool_]
) -> tuple[float, float, int]:
    caught = int(np.count_nonzero(is_fraud & flagged))
    flagged_n = int(np.count_nonzero(flagged))
    precision = caught / flagged_n if flagged_n else 0.0
    return precision, caught / max(1, int(np.count_nonzero(is_fraud))), caught


def judge(
    is_fraud: NDArray[np.bool_],
    champion: NDArray[np.float64],
    challenger: NDArray[np.float64],
    *,
    threshold: float,
    min_labelled_frauds: int,
    min_precision_gain: float = 0.0,
) -> LiveVerdict:
    """The promotion rule over row-level scores (see the module docstring)."""
    y = np.asarray(is_fraud, dtype=bool)
    champion = np.asarray(champion, dtype=np.float64)
    challenger = np.asarray(challenger, dtype=np.float64)
    n, frauds = int(y.size), int(np.count_nonzero(y))
    if frauds < min_labelled_frauds:
        return LiveVerdict(
            False,
            f"not enough matured labels: {frauds} labelled frauds among {n:,} purchases both"
            f" models scored (need {min_labelled_frauds})",
            n,
            frauds,
        )
    _, _, caught = _precision_recall(y, champion >= threshold)
    if caught == 0:
        return LiveVerdict(
            False,
            f"the champion catches none of the {frauds} labelled frauds at threshold"
            f" {threshold:g}: no recall to compare at",
            n,
            frauds,
            champion_recall=0.0,
        )
    c_t = threshold_for_recall(y, champion, caught)
    c_precision, c_recall, _ = _precision_recall(y, champion >= c_t)
    t = threshold_for_recall(y, challenger, caught)
    h_precision, h_recall, _ = _precision_recall(y, challenger >= t)
    at = (
        f"at the champion's recall {c_recall:.3f} ({caught} of {frauds} labelled frauds,"
        f" {n:,} purchases): precision {h_precision:.3f} (threshold {t:.3f}) vs the"
        f" champion's {c_precision:.3f} (threshold {c_t:.3f})"
    )
    promote = h_precision > c_precision + min_precision_gain
    need = f", gain needed > {min_precision_gain:g}" if min_precision_gain and not promote else ""
    return LiveVerdict(
        promote,
        f"{'better' if promote else 'no better'} live precision {at}{need}",
        n,
        frauds,
        champion_recall=c_recall,
        champion_precision=c_precision,
        champion_threshold=c_t,
        challenger_recall=h_recall,
        challenger_precision=h_precision,
        challenger_threshold=t,
    )


_EVIDENCE_SQL = """
with labels as (
    select event_id, arg_max(is_fraud, known_at) as is_fraud
    from staging.stg_fraud_labels
    where known_at <= $as_of
    group by event_id
)
select
    coalesce(labels.is_fraud, false) as is_fraud,
    decisions.probability,
    decisions.challenger_probability
from staging.stg_decisions as decisions
left join labels on labels.event_id = decisions.event_id
where decisions.model_version = $champion
    and decisions.challenger_version = $challenger
    and decisions.challenger_probability is not null
    and decisions.probability is not null
    and decisions.decided_at <= $as_of
"""


def live_evidence(
    settings: Settings, champion_version: str, challenger_version: str, as_of: datetime
) -> LiveEvidence:
    """The purchases both versions scored by ``as_of``, with the labels known by then
    (the latest label of a purchase wins, e.g. a review overturning a chargeback)."""
    import duckdb

    from shopsentry.warehouse.db import connect

    naive_utc = as_of.astimezone(UTC).replace(tzinfo=None)
    params = {"as_of": naive_utc, "champion": champion_version, "challenger": challenger_version}
    try:
        with connect(settings, read_only=True) as con:
            rows = con.execute(_EVIDENCE_SQL, params).fetchall()
    except duckdb.CatalogException as exc:  # staging not built yet, or before the columns
        raise WarehouseError(
            f"no live challenger evidence in the warehouse: {exc}",
            hint="run `shopsentry batch run hourly_etl` first",
        ) from None
    return LiveEvidence(
        champion_version,
        challenger_version,
        np.fromiter((r[0] for r in rows), dtype=bool, count=len(rows)),
        np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)),
        np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
    )


def apply_live_gate(
    settings: Settings, as_of: datetime | None = None, mlc: MlflowClient | None = None
) -> LiveVerdict | None:
    """Judge the registry's challenger on live evidence; promote it if it wins.

    None when there is nothing to judge (no champion or no challenger). The verdict is
    logged, tagged on the challenger's version and written into its model card.
    """
    from shopsentry.models import registry
    from shopsentry.models.scorer import CHALLENGER, CHAMPION

    mlc = mlc or registry.client(settings)
    name = settings.model.name
    champion = registry.registered_alias(mlc, name, CHAMPION)
    challenger = registry.registered_alias(mlc, name, CHALLENGER)
    if champion is None or challenger is None:
        logger.info("live gate: no %s to judge", "challenger" if champion else "champion")
        return None
    when = as_of or datetime.now(UTC)
    gate = settings.model.live_gate
    try:
        evidence = live_evidence(settings, champion, challenger, when)
        verdict = judge(
            evidence.is_fraud,
            evidence.champion,
            evidence.challenger,
            threshold=settings.detector.threshold,
            min_labelled_frauds=gate.min_labelled_frauds,
            min_precision_gain=gate.min_precision_gain,
        )
    except (WarehouseError, WarehouseMissing) as exc:  # busy (retryable) propagates
        verdict = LiveVerdict(False, f"no live evidence: {exc.one_line()}", 0, 0)
    verdict = LiveVerdict(
        **{**verdict.as_dict(), "champion_version": champion, "challenger_version": challenger}
    )
    logger.info(
        "live gate: challenger v%s %s over champion v%s: %s",
        challenger,
        "promoted" if verdict.promote else "not promoted",
        champion,
        verdict.reason,
    )
    record_verdict(settings, verdict, when, mlc)
    if verdict.promote:
        registry.set_champion(settings, challenger, f"live evidence: {verdict.reason}", mlc)
    return verdict


def record_verdict(
    settings: Settings, verdict: LiveVerdict, as_of: datetime, mlc: MlflowClient
) -> None:
    """Tag the challenger's version with the verdict and add it to its model card."""
    from shopsentry.models.card import rewrite_card
    from shopsentry.models.registry import version_dir

    version = verdict.challenger_version
    assert version is not None
    name = settings.model.name
    mlc.set_model_version_tag(name, version, "live_gate_reason", verdict.reason)
    mlc.set_model_version_tag(name, version, "live_gate_promoted", str(verdict.promote).lower())
    mlc.set_model_version_tag(name, version, "live_gate_at", as_of.isoformat())
    directory = version_dir(settings, version)
    report_file = directory / "report.json"
    if not report_file.is_file():
        logger.info("live gate: no local report for v%s; the verdict is in its tags", version)
        return
    report = json.loads(report_file.read_text())
    report["live_gate"] = {**verdict.as_dict(), "as_of": as_of.isoformat()}
    report_file.write_text(json.dumps(report, indent=2, default=str))
    rewrite_card(directory, name, version, report)
