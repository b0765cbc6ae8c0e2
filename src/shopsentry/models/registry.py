"""MLflow tracking and registry: runs, versions, the champion/challenger aliases.

MLflow is the source of truth (aliases ``champion`` and ``challenger`` on
``model.name``); each alias move also rewrites the alias's local pointer file
the detector polls (and clearing the challenger removes its file), so the hot path
never imports MLflow. Every version's files (model JSON, report, card, plot) are kept
both as run artifacts and in ``<data_dir>/models/<name>/v<N>/``.

Registering a trained version and the offline promotion gate that picks its alias are
in :mod:`shopsentry.models.offline_gate`; the live gate, in
:mod:`shopsentry.models.live_gate`. Before any alias moves, here, the target model is
loaded and validated; a corrupted or incompatible file raises
:class:`~shopsentry.errors.ModelError` and nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.errors import ModelError, NoModelRegistered
from shopsentry.models.evaluation import KEY_METRICS
from shopsentry.models.scorer import (
    CHALLENGER,
    CHAMPION,
    ModelFiles,
    build_scorer,
    clear_pointer,
    current_feature_names,
    write_pointer,
)
from shopsentry.redaction import redact_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    created: datetime
    run_id: str | None
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """What the registry needs: the MLflow tracking URI and experiment, the directory for
    local run artifacts, the model's files on this machine, and the offline gate's
    operating point (the detector's threshold, the FPR and daily review budgets)."""

    tracking_uri: str
    experiment: str
    artifact_dir: Path
    files: ModelFiles
    threshold: float
    fpr_budget: float
    review_budget_per_day: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryConfig:
        return cls(
            tracking_uri=settings.mlflow_tracking_uri,
            experiment=settings.model.experiment,
            artifact_dir=settings.mlflow_artifact_dir,
            files=ModelFiles.from_settings(settings),
            threshold=settings.detector.threshold,
            fpr_budget=settings.model.fpr_budget,
            review_budget_per_day=settings.model.review_budget_per_day,
        )


def client(config: RegistryConfig) -> MlflowClient:
    """A client on the configured tracking URI (SQLite under the data dir by default)."""
    import mlflow

    if config.tracking_uri.startswith("sqlite:///"):
        Path(config.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow.set_tracking_uri(config.tracking_uri)
    return mlflow.MlflowClient(tracking_uri=config.tracking_uri)


def registered_client(config: RegistryConfig) -> MlflowClient:
    """A client on a registry that holds at least one version of the model: the commands
    that move an alias start here. On a fresh machine (no registry database yet, or
    nothing registered under the name) it raises NoModelRegistered, and with the default
    SQLite registry it does so before MLflow would create an empty database."""
    name = config.files.name
    uri = config.tracking_uri
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not _versions_from_sqlite(path, name):
            raise NoModelRegistered(name, str(path))
        return client(config)
    mlc = client(config)
    # a name with no versions finds nothing; a server that does not answer still raises
    if not mlc.search_model_versions(f"name = '{name}'", max_results=1):
        raise NoModelRegistered(name, redact_url(uri))
    return mlc


def ensure_experiment(config: RegistryConfig, mlc: MlflowClient) -> str:
    """The experiment's id, created on first use (with a local tracking URI, its run
    artifacts go under ``artifact_dir``)."""
    experiment = mlc.get_experiment_by_name(config.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if config.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in config.tracking_uri:
        config.artifact_dir.mkdir(parents=True, exist_ok=True)
        location = config.artifact_dir.resolve().as_uri()
    return str(mlc.create_experiment(config.experiment, artifact_location=location))


def version_dir(config: RegistryConfig, version: str) -> Path:
    return config.files.directory / config.files.name / f"v{version}"


def registered_alias(mlc: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias names in the MLflow registry, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlc.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def model_file(config: RegistryConfig, version: str, mlc: MlflowClient | None = None) -> Path:
    """The version's model JSON on local disk, downloaded from MLflow when absent."""
    local = version_dir(config, version) / "model.json"
    if local.is_file():
        return local
    import mlflow
    from mlflow.exceptions import MlflowException

    mlc = mlc or client(config)
    try:
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{config.files.name}/{version}",
                tracking_uri=config.tracking_uri,
            )
        )
    except MlflowException as exc:
        raise ModelError(
            f"model version {version} cannot be fetched: {exc.message}",
            hint="see `shopsentry models list`",
        ) from None
    source = downloaded / "model.json"
    if not source.is_file():
        raise ModelError(
            f"model version {version} has no model.json", hint="it was not logged by shopsentry"
        )
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(source.read_bytes())
    return local


def load_checked(
    config: RegistryConfig, version: str, mlc: MlflowClient
) -> tuple[Path, bytes, Any]:
    """The version's model file, bytes and scorer, built as the detector would build it:
    a file that cannot be read or scored raises ModelError before anything points at it."""
    path = model_file(config, version, mlc)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read {path}: {exc.strerror}", hint="roll back or retrain"
        ) from None
    scorer = build_scorer(
        raw,
        version=version,
        cache_dir=config.files.kernel_cache,
        expected_features=current_feature_names(),
    )
    return path, raw, scorer


def _history(mlc: MlflowClient, name: str) -> list[str]:
    tags = mlc.get_registered_model(name).tags
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except ValueError:
        return []


def set_champion(
    config: RegistryConfig,
    version: str,
    reason: str,
    mlc: MlflowClient | None = None,
    *,
    record: bool = True,
) -> None:
    """Validate the version's model, then move the alias and the local pointer to it.

    The model is loaded and checked first: a bad file raises ModelError and the alias,
    the pointer and therefore the serving model stay where they were.
    """
    mlc = mlc or client(config)
    name = config.files.name
    path, raw, scorer = load_checked(config, version, mlc)
    mlc.set_registered_model_alias(name, CHAMPION, version)
    if registered_alias(mlc, name, CHALLENGER) == version:
        mlc.delete_registered_model_alias(name, CHALLENGER)
        clear_pointer(config.files, CHALLENGER)
    if record:
        history = [v for v in _history(mlc, name) if v != version] + [version]
        mlc.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-50:]))
    mlc.set_model_version_tag(name, version, "promoted_at", datetime.now(UTC).isoformat())
    mlc.set_model_version_tag(name, version, "promotion_reason", reason)
    write_pointer(
        config.files, name, version, path, hashlib.sha256(raw).hexdigest(), scorer.feature_names
    )
    logger.info("v%s is now champion of %s: %s", version, name, reason)


def set_challenger(
    config: RegistryConfig, version: str, reason: str, mlc: MlflowClient | None = None
) -> None:
    """Validate the version's model, then give it the challenger alias and pointer:
    running detectors start scoring it beside the champion (docs/model-ops.md)."""
    mlc = mlc or client(config)
    name = config.files.name
    path, raw, scorer = load_checked(config, version, mlc)
    mlc.set_registered_model_alias(name, CHALLENGER, version)
    mlc.set_model_version_tag(name, version, "challenger_reason", reason)
    write_pointer(
        config.files,
        name,
        version,
        path,
        hashlib.sha256(raw).hexdigest(),
        scorer.feature_names,
        alias=CHALLENGER,
    )
    logger.info("v%s is challenger of %s: %s", version, name, reason)


def clear_challenger(config: RegistryConfig, mlc: MlflowClient | None = None) -> str | None:
    """Remove the challenger alias and pointer; returns the version that had it (without
    a client, a registry with no version of the model raises NoModelRegistered)."""
    mlc = mlc or registered_client(config)
    name = config.files.name
    version = registered_alias(mlc, name, CHALLENGER)
    if version is not None:
        mlc.delete_registered_model_alias(name, CHALLENGER)
    clear_pointer(config.files, CHALLENGER)
    return version


def _require_version(mlc: MlflowClient, config: RegistryConfig, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_model_version(config.files.name, version)
    except MlflowException:
        raise ModelError(
            f"no version {version} of {config.files.name}", hint="see `shopsentry models list`"
        ) from None


def make_challenger(config: RegistryConfig, version: str) -> None:
    """Make ``version`` the challenger by hand (after validating its model file)."""
    mlc = registered_client(config)
    _require_version(mlc, config, version)
    if registered_alias(mlc, config.files.name, CHAMPION) == version:
        raise ModelError(
            f"version {version} is the champion", hint="pick another version as challenger"
        )
    set_challenger(config, version, "manual challenger", mlc)


def promote(config: RegistryConfig, version: str) -> None:
    """Make ``version`` champion by hand (after validating its model file)."""
    mlc = registered_client(config)
    _require_version(mlc, config, version)
    set_champion(config, version, "manual promotion", mlc)


def rollback(config: RegistryConfig) -> str:
    """Give the champion alias back to the previous champion; returns its version."""
    mlc = registered_client(config)
    name = config.files.name
    current = registered_alias(mlc, name, CHAMPION)
    history = _history(mlc, name)
    if current is not None and history and history[-1] == current:
        history = history[:-1]
    if not history:
        raise ModelError(
            f"{name} has no previous champion to roll back to", hint="promote a version instead"
        )
    previous = history[-1]
    set_champion(config, previous, f"rollback from v{current}", mlc, record=False)
    mlc.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    if current is not None:
        mlc.set_model_version_tag(name, current, "rolled_back_at", datetime.now(UTC).isoformat())
    return previous


def list_versions(config: RegistryConfig) -> list[VersionInfo]:
    """Every version, newest first, with aliases and the key metrics of its run.

    A SQLite registry (the default) is read directly, read-only: listing needs neither
    the MLflow import nor its schema migrations (seconds each). Other tracking URIs go
    through the MLflow client.
    """
    uri = config.tracking_uri
    if uri.startswith("sqlite:///"):
        return _versions_from_sqlite(Path(uri.removeprefix("sqlite:///")), config.files.name)
    return _versions_from_mlflow(config)


_METRIC_KEYS = (*KEY_METRICS, "baseline_pr_auc")


def _versions_from_sqlite(path: Path, name: str) -> list[VersionInfo]:
    import sqlite3

    if not path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ModelError(f"cannot open the model registry {path}: {exc}") from None
    try:
        rows = db.execute(
            "select version, creation_time, run_id from model_versions"
            " where name = ? and current_stage <> 'Deleted_Internal'",
            (name,),
        ).fetchall()
        aliases = db.execute(
            "select version, alias from registered_model_aliases where name = ?", (name,)
        ).fetchall()
        tags = db.execute(
            "select version, key, value from model_version_tags where name = ?", (name,)
        ).fetchall()
        marks = ",".join("?" * len(_METRIC_KEYS))
        metrics = db.execute(
            f"select run_uuid, key, value from latest_metrics where key in ({marks})",
            _METRIC_KEYS,
        ).fetchall()
    except sqlite3.OperationalError:  # no registry tables yet: nothing registered
        return []
    finally:
        db.close()
    by_run: dict[str, dict[str, float]] = {}
    for run_id, key, value in metrics:
        by_run.setdefault(run_id, {})[key] = float(value)
    out = [
        VersionInfo(
            version=str(version),
            aliases=tuple(sorted(a for v, a in aliases if v == version)),
            created=datetime.fromtimestamp(created / 1000, UTC),
            run_id=run_id,
            metrics=by_run.get(run_id or "", {}),
            tags={k: v for ver, k, v in tags if ver == version},
        )
        for version, created, run_id in rows
    ]
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def _versions_from_mlflow(config: RegistryConfig) -> list[VersionInfo]:
    from mlflow.exceptions import MlflowException

    mlc = client(config)
    try:
        versions = mlc.search_model_versions(f"name = '{config.files.name}'")
    except MlflowException:
        return []
    if not versions:
        return []
    # search results carry no aliases; the registered model has them all
    aliases: dict[str, list[str]] = {}
    for alias, version in mlc.get_registered_model(config.files.name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                run_metrics = mlc.get_run(mv.run_id).data.metrics
                metrics = {k: run_metrics[k] for k in _METRIC_KEYS if k in run_metrics}
            except MlflowException:
                metrics = {}
        out.append(
            VersionInfo(
                version=str(mv.version),
                aliases=tuple(sorted(aliases.get(str(mv.version), []))),
                created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
                run_id=mv.run_id,
                metrics=metrics,
                tags=dict(mv.tags),
            )
        )
    return out
