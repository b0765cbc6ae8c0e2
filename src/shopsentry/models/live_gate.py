"""Promotion from live evidence: the challenger against the champion on the purchases
both scored in production, judged on the labels known by now, over the purchase days
whose labels have matured (docs/model-ops.md).

The rule (:func:`judge`, a pure function over arrays):

1. only the purchases of days whose **label maturity** (the share of the day's fraud
   expected to be labelled by ``as_of``) is at least ``min_label_maturity`` are judged;
   recent days, whose chargebacks have not arrived yet, are left out, and so is a day
   without a maturity estimate. The maturity is the warehouse's own
   (``monitoring.label_maturity_daily``, as carried by ``model_comparison_daily`` for
   this champion and challenger), built as of the gate's ``as_of``, never recomputed
   here. Since an older day is never less mature, the days kept are the oldest ones:
   the matured window;
2. at least ``min_labelled_frauds`` of those purchases carry a fraud label known by
   ``as_of`` (a chargeback or an analyst's confirmation); fewer, and nothing is decided;
3. the recall to compare at is the champion's at the detector's threshold (the frauds
   it caught there);
4. each model's threshold is set to the highest one at which it catches at least that
   many of the labelled frauds (equal recall; for the champion that is its lowest
   caught fraud's score, so a copy of the champion ties), and the two precisions there
   are compared: the challenger is promoted only if it is better by more than
   ``min_precision_gain``.

Within the matured window a purchase without a fraud label known by ``as_of`` counts as
legitimate: the little fraud still to be charged back there weighs on both models alike.
The verdict's reason names the window and the share of the evidence it kept.

:func:`live_evidence` is the thin warehouse query (``staging.stg_decisions`` joined with
``staging.stg_fraud_labels``, and the days' maturity); :func:`apply_live_gate` is what
the weekly retrain calls (with a :class:`LiveGateConfig` it builds from the settings):
it reads the aliases, judges, promotes or refuses, and says why in the log, on the
challenger's registry version (tags) and in its model card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.warehouse.db import WarehouseError, WarehouseMissing

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from shopsentry.config import LiveGateSettings, Settings
    from shopsentry.models.registry import RegistryConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveGateConfig:
    """What the live gate needs: the warehouse file its evidence is read from, the
    registry (the aliases, the versions' files, and the detector's threshold, at which
    the champion's recall is taken) and the rule's settings (``model.live_gate``)."""

    warehouse: Path
    registry: RegistryConfig
    gate: LiveGateSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveGateConfig:
        from shopsentry.models.registry import RegistryConfig

        return cls(
            warehouse=settings.warehouse_path,
            registry=RegistryConfig.from_settings(settings),
            gate=settings.model.live_gate,
        )


@dataclass(frozen=True)
class LiveEvidence:
    """Row-level: one entry per purchase both versions scored live, with its purchase
    day; and per purchase day, its label maturity as of ``maturity_as_of`` (the time the
    warehouse's monitoring models were built at; None: not built for this pair)."""

    champion_version: str
    challenger_version: str
    day: NDArray[np.datetime64]
    is_fraud: NDArray[np.bool_]
    champion: NDArray[np.float64]
    challenger: NDArray[np.float64]
    maturity: Mapping[date, float | None] = field(default_factory=dict)
    maturity_as_of: datetime | None = None


@dataclass(frozen=True)
class LiveVerdict:
    promote: bool
    reason: str
    # What was judged: the purchases (and labelled frauds) of the matured window.
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
    # The matured window (first and last purchase day kept, ISO dates) and all the
    # evidence both scored, of which it kept ``purchases``.
    window_first: str | None = None
    window_last: str | None = None
    min_label_maturity: float | None = None
    scored_purchases: int | None = None
    scored_labelled_frauds: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MaturedWindow:
    """The purchases of the days whose label maturity is at least ``min_label_maturity``."""

    keep: NDArray[np.bool_]
    first: date | None
    last: date | None
    days: int
    all_days: int
    min_label_maturity: float

    @classmethod
    def of(cls, evidence: LiveEvidence, min_label_maturity: float) -> MaturedWindow:
        days: list[date] = np.unique(evidence.day).astype(object).tolist()
        matured = [d for d in days if (evidence.maturity.get(d) or 0.0) >= min_label_maturity]
        keep = np.isin(evidence.day, np.array(matured, dtype="datetime64[D]"))
        first, last = (matured[0], matured[-1]) if matured else (None, None)
        return cls(keep, first, last, len(matured), len(days), min_label_maturity)

    def describe(self, evidence: LiveEvidence) -> str:
        """The window and the share of the evidence it kept, for the verdict's reason."""
        n, kept = int(evidence.is_fraud.size), int(np.count_nonzero(self.keep))
        frauds = int(np.count_nonzero(evidence.is_fraud))
        kept_frauds = int(np.count_nonzero(evidence.is_fraud & self.keep))
        share = f" ({kept / n:.0%})" if n else ""
        window = f"matured window {self.first}..{self.last}" if self.first else "no matured window"
        return (
            f"{window} ({self.days} of {self.all_days} days with label maturity >="
            f" {self.min_label_maturity:g}): {kept:,} of the {n:,} purchases both models"
            f" scored{share}, {kept_frauds} of {frauds} labelled frauds"
        )


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
    evidence: LiveEvidence,
    *,
    threshold: float,
    min_labelled_frauds: int,
    min_label_maturity: float,
    min_precision_gain: float = 0.0,
) -> LiveVerdict:
    """The promotion rule over row-level scores (see the module docstring)."""
    window = MaturedWindow.of(evidence, min_label_maturity)
    verdict = _compare(
        evidence.is_fraud[window.keep],
        evidence.champion[window.keep],
        evidence.challenger[window.keep],
        window.describe(evidence),
        threshold=threshold,
        min_labelled_frauds=min_labelled_frauds,
        min_precision_gain=min_precision_gain,
    )
    return replace(
        verdict,
        window_first=window.first.isoformat() if window.first else None,
        window_last=window.last.isoformat() if window.last else None,
        min_label_maturity=min_label_maturity,
        scored_purchases=int(evidence.is_fraud.size),
        scored_labelled_frauds=int(np.count_nonzero(evidence.is_fraud)),
    )


def _compare(
    y: NDArray[np.bool_],
    champion: NDArray[np.float64],
    challenger: NDArray[np.float64],
    window: str,
    *,
    threshold: float,
    min_labelled_frauds: int,
    min_precision_gain: float,
) -> LiveVerdict:
    """Steps 2 to 4 of the rule, on the matured window's rows (``window`` describes it)."""
    n, frauds = int(y.size), int(np.count_nonzero(y))
    if frauds < min_labelled_frauds:
        return LiveVerdict(
            False,
            f"not enough matured labels: {frauds} labelled frauds among {n:,} purchases of"
            f" matured days (need {min_labelled_frauds}); {window}",
            n,
            frauds,
        )
    _, _, caught = _precision_recall(y, champion >= threshold)
    if caught == 0:
        return LiveVerdict(
            False,
            f"the champion catches none of the {frauds} labelled frauds at threshold"
            f" {threshold:g}: no recall to compare at; {window}",
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
        f"{'better' if promote else 'no better'} live precision {at}{need}; {window}",
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
    cast(decisions.occurred_at as date) as day,
    coalesce(labels.is_fraud, false) as is_fraud,
    decisions.probability,
    decisions.challenger_probability
from staging.stg_decisions as decisions
left join labels on labels.event_id = decisions.event_id
where decisions.model_version = $champion
    and decisions.challenger_version = $challenger
    and decisions.challenger_probability is not null
    and decisions.probability is not null
    and decisions.occurred_at <= $as_of
"""

# The days' maturity for this pair, as the monitoring models computed it (and when).
_MATURITY_SQL = """
select day, label_maturity, as_of
from monitoring.model_comparison_daily
where champion_version = $champion and challenger_version = $challenger
"""


def live_evidence(
    warehouse: Path, champion_version: str, challenger_version: str, as_of: datetime
) -> LiveEvidence:
    """The purchases both versions scored that were made by ``as_of`` (by
    ``occurred_at``, as the monitoring models count them, so a replay of past traffic is
    judged as of its own time), with the labels known by then (the latest label of a
    purchase wins, e.g. a review overturning a chargeback), and the label maturity of
    their days as the warehouse (the DuckDB file ``warehouse``) last built them."""
    import duckdb

    from shopsentry.warehouse.db import connect

    params = {"champion": champion_version, "challenger": challenger_version}
    try:
        with connect(warehouse, read_only=True) as con:
            rows = con.execute(_EVIDENCE_SQL, {**params, "as_of": _naive_utc(as_of)}).fetchall()
            try:
                days = con.execute(_MATURITY_SQL, params).fetchall()
            except duckdb.CatalogException:  # the monitoring models not built yet
                days = []
    except duckdb.CatalogException as exc:  # staging not built yet, or before the columns
        raise WarehouseError(
            f"no live challenger evidence in the warehouse: {exc}",
            hint="run `shopsentry batch run hourly_etl` first",
        ) from None
    return LiveEvidence(
        champion_version,
        challenger_version,
        np.array([r[0] for r in rows], dtype="datetime64[D]"),
        np.fromiter((r[1] for r in rows), dtype=bool, count=len(rows)),
        np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
        np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows)),
        maturity={d: (None if m is None else float(m)) for d, m, _ in days},
        maturity_as_of=max((at for _, _, at in days), default=None),
    )


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def current_evidence(
    warehouse: Path,
    champion: str,
    challenger: str,
    as_of: datetime,
    refresh: Callable[[datetime], object] | None = None,
) -> LiveEvidence:
    """:func:`live_evidence` with the days' maturity as of ``as_of`` itself: when the
    warehouse's monitoring models were built at another time, ``refresh(as_of)``
    rebuilds them and the evidence is read again; without ``refresh`` (or if it did not
    help), a :class:`WarehouseError` says so (the gate then refuses)."""
    evidence = live_evidence(warehouse, champion, challenger, as_of)
    if evidence.is_fraud.size == 0 or evidence.maturity_as_of == _naive_utc(as_of):
        return evidence
    if refresh is not None:
        refresh(as_of)
        evidence = live_evidence(warehouse, champion, challenger, as_of)
        if evidence.maturity_as_of == _naive_utc(as_of):
            return evidence
    built = evidence.maturity_as_of
    raise WarehouseError(
        "the label maturity in the warehouse is "
        + (f"as of {built:%Y-%m-%d %H:%M:%S}" if built else "not built for this pair")
        + f", not as of the gate's {_naive_utc(as_of):%Y-%m-%d %H:%M:%S}",
        hint="rebuild it as of then: `shopsentry batch run model_monitoring`",
    )


def apply_live_gate(
    config: LiveGateConfig,
    as_of: datetime | None = None,
    mlc: MlflowClient | None = None,
    *,
    refresh: Callable[[datetime], object] | None = None,
) -> LiveVerdict | None:
    """Judge the registry's challenger on live evidence; promote it if it wins.

    None when there is nothing to judge (no champion or no challenger). ``refresh``
    rebuilds the warehouse's monitoring models as of a time, when they were built at
    another (see :func:`current_evidence`). The verdict is logged, tagged on the
    challenger's version and written into its model card.
    """
    from shopsentry.models import registry
    from shopsentry.models.scorer import CHALLENGER, CHAMPION
    from shopsentry.warehouse.db import DbtFailed

    mlc = mlc or registry.client(config.registry)
    name = config.registry.files.name
    champion = registry.registered_alias(mlc, name, CHAMPION)
    challenger = registry.registered_alias(mlc, name, CHALLENGER)
    if champion is None or challenger is None:
        logger.info("live gate: no %s to judge", "challenger" if champion else "champion")
        return None
    when = as_of or datetime.now(UTC)
    gate = config.gate
    try:
        verdict = judge(
            current_evidence(config.warehouse, champion, challenger, when, refresh),
            threshold=config.registry.threshold,
            min_labelled_frauds=gate.min_labelled_frauds,
            min_label_maturity=gate.min_label_maturity,
            min_precision_gain=gate.min_precision_gain,
        )
    except (WarehouseError, WarehouseMissing, DbtFailed) as exc:  # busy (retryable) propagates
        verdict = LiveVerdict(False, f"no live evidence: {exc.one_line()}", 0, 0)
    verdict = replace(verdict, champion_version=champion, challenger_version=challenger)
    logger.info(
        "live gate: challenger v%s %s over champion v%s: %s",
        challenger,
        "promoted" if verdict.promote else "not promoted",
        champion,
        verdict.reason,
    )
    record_verdict(config.registry, verdict, when, mlc)
    if verdict.promote:
        registry.set_champion(config.registry, challenger, f"live evidence: {verdict.reason}", mlc)
    return verdict


def record_verdict(
    config: RegistryConfig, verdict: LiveVerdict, as_of: datetime, mlc: MlflowClient
) -> None:
    """Tag the challenger's version with the verdict and add it to its model card."""
    from shopsentry.models.card import rewrite_card
    from shopsentry.models.registry import version_dir

    version = verdict.challenger_version
    assert version is not None
    name = config.files.name
    mlc.set_model_version_tag(name, version, "live_gate_reason", verdict.reason)
    mlc.set_model_version_tag(name, version, "live_gate_promoted", str(verdict.promote).lower())
    mlc.set_model_version_tag(name, version, "live_gate_at", as_of.isoformat())
    directory = version_dir(config, version)
    report_file = directory / "report.json"
    if not report_file.is_file():
        logger.info("live gate: no local report for v%s; the verdict is in its tags", version)
        return
    report = json.loads(report_file.read_text())
    report["live_gate"] = {**verdict.as_dict(), "as_of": as_of.isoformat()}
    report_file.write_text(json.dumps(report, indent=2, default=str))
    rewrite_card(directory, name, version, report)
