"""Settings for every part of shopsentry, with the design's numbers as defaults.

Only entry points (the CLI, the API app factory, DAG files) build a :class:`Settings`
from the environment; library code receives the object it needs. Environment variables
use the prefix ``SHOPSENTRY_`` and ``__`` for nesting, e.g.
``SHOPSENTRY_DETECTOR__THRESHOLD=0.8`` or ``SHOPSENTRY_BUS=kafka://127.0.0.1:9092``.
A TOML file (``SHOPSENTRY_CONFIG`` or ``--config``) may set the same keys; the
environment wins over the file, and an entry point's own options (CLI flags) win over both.
Every default host and port lives here; nothing else hard-codes one.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shopsentry.errors import ConfigError
from shopsentry.redaction import redact_data

DAY_MS = 24 * 3600 * 1000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Frozen):
    """One topic as the design specifies it (Component 1 and section 6)."""

    name: str
    partitions: int = Field(ge=1, le=1024)
    replication_factor: int = Field(default=3, ge=1, le=16)
    retention_ms: int = Field(default=7 * DAY_MS, ge=-1)
    min_insync_replicas: int = Field(default=2, ge=1, le=16)
    cleanup_policy: Literal["delete", "compact"] = "delete"

    @model_validator(mode="after")
    def _isr_fits(self) -> TopicSettings:
        if self.min_insync_replicas > self.replication_factor:
            # A single-broker development setup asks for RF 1; min ISR follows it down.
            object.__setattr__(self, "min_insync_replicas", self.replication_factor)
        return self


class TopicsSettings(_Frozen):
    purchase_events: TopicSettings = TopicSettings(
        name="purchase-events", partitions=3, retention_ms=7 * DAY_MS
    )
    user_behavior: TopicSettings = TopicSettings(
        name="user-behavior", partitions=2, retention_ms=3 * DAY_MS
    )
    fraud_alerts: TopicSettings = TopicSettings(
        name="fraud-alerts", partitions=2, retention_ms=7 * DAY_MS
    )
    decisions: TopicSettings = TopicSettings(
        name="decisions", partitions=3, retention_ms=7 * DAY_MS
    )
    dead_letter: TopicSettings = TopicSettings(
        name="dead-letter", partitions=1, retention_ms=14 * DAY_MS
    )
    labels: TopicSettings = TopicSettings(
        name="fraud-labels", partitions=1, retention_ms=90 * DAY_MS
    )
    reviews: TopicSettings = TopicSettings(
        name="alert-reviews", partitions=1, retention_ms=90 * DAY_MS
    )
    notifications_dead_letter: TopicSettings = TopicSettings(
        name="notifications-dead-letter", partitions=1, retention_ms=14 * DAY_MS
    )
    # Analyst rules and lists: one partition (its offsets version the rule set), kept
    # forever and compacted to the latest state of each rule and list entry.
    rules: TopicSettings = TopicSettings(
        name="rules-control", partitions=1, retention_ms=-1, cleanup_policy="compact"
    )

    def all(self) -> list[TopicSettings]:
        return [getattr(self, name) for name in type(self).model_fields]

    def with_replication(self, replication_factor: int) -> TopicsSettings:
        """The same topics with another replication factor (a single-broker dev cluster)."""
        changed = {
            name: getattr(self, name).model_copy(
                update={
                    "replication_factor": replication_factor,
                    "min_insync_replicas": min(
                        getattr(self, name).min_insync_replicas, replication_factor
                    ),
                }
            )
            for name in type(self).model_fields
        }
        return TopicsSettings(**changed)


class KafkaSettings(_Frozen):
    """Client settings for the production engine (confluent-kafka / librdkafka names)."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    client_id: str = "shopsentry"
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    linger_ms: int = Field(default=5, ge=0)
    batch_size: int = Field(default=1_000_000, ge=1)
    request_timeout_ms: int = Field(default=15_000, ge=100)
    # How long the producer keeps retrying a record (leader moves, ISR below minimum)
    # before flush() reports it unacknowledged (librdkafka's message.timeout.ms).
    delivery_timeout_ms: int = Field(default=120_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    connect_timeout_s: float = Field(default=10.0, gt=0)


class ChallengerSettings(_Frozen):
    """The registry's ``challenger`` alias on live traffic (docs/model-ops.md).

    ``shadow`` (the default) scores every purchase with the challenger too, whenever the
    alias exists, and records its score on the decision without ever acting on it;
    ``split`` lets the challenger decide for ``share`` of the users, picked by a stable
    hash of ``salt`` + user id (the same user always on the same side, whatever the
    partitioning; the design's 50/50 between regions); ``off`` never loads it.
    """

    mode: Literal["off", "shadow", "split"] = "shadow"
    share: float = Field(default=0.5, ge=0.0, le=1.0)
    salt: str = Field(default="shopsentry-challenger", min_length=1)


class DetectorSettings(_Frozen):
    """The hot path (the design's Flow 1 and section 3, step 5)."""

    group_id: str = "fraud-detector"
    workers: int = Field(default=2, ge=1, le=64)
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    decline_threshold: float = Field(default=0.95, ge=0.0, le=1.0)
    batch_max_records: int = Field(default=500, ge=1)
    batch_max_wait_ms: int = Field(default=20, ge=0)
    max_event_bytes: int = Field(default=64 * 1024, ge=256)
    top_features: int = Field(default=3, ge=0, le=20)
    model_poll_interval_s: float = Field(default=5.0, gt=0)
    # The supervisor restarts a worker that died after restart_backoff_s, doubling up to
    # restart_backoff_max_s while it keeps dying; a run of restart_healthy_s resets it.
    restart_backoff_s: float = Field(default=1.0, gt=0)
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    restart_healthy_s: float = Field(default=60.0, gt=0)
    # Worker i serves /metrics on metrics_host:(metrics_port + i); port 0: no endpoint.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    # Apply the analysts' rules and lists from the control topic (docs/rules.md).
    rules: bool = True
    challenger: ChallengerSettings = ChallengerSettings()
    # A re-posted event_id is counted and decided once: each user's last N event ids per
    # topic are kept with its state (detection/dedupe.py). 0: no deduplication.
    recent_event_ids: int = Field(default=32, ge=0, le=1024)
    # Timestamp-synchronised input (docs/stream.md; Kafka Streams' max.task.idle.ms): a
    # record is handed to the hot path once every input partition of the worker is read
    # past its log timestamp, or is caught up and, for the other topic, has stayed so for
    # align_max_idle_ms. 0: no alignment (each micro-batch as polled).
    align_max_idle_ms: int = Field(default=50, ge=0, le=60_000)
    align_max_held_records: int = Field(default=50_000, ge=1)

    @model_validator(mode="after")
    def _bands_ordered(self) -> DetectorSettings:
        if self.decline_threshold < self.threshold:
            raise ValueError("decline_threshold must be >= threshold")
        return self


class StateSettings(_Frozen):
    """The detector's per-user feature state: ``lmdb`` is an LMDB environment under the
    data dir's state directory (shared by the workers of one machine); ``redis`` keeps it
    in Redis at ``redis_url`` (workers on several machines). ``local`` is accepted as the
    old name of ``lmdb`` (the word ``local`` now only names the embedded event log)."""

    backend: Literal["lmdb", "redis"] = "lmdb"
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")

    @field_validator("backend", mode="before")
    @classmethod
    def _old_name(cls, value: object) -> object:
        return "lmdb" if value == "local" else value


class LiveGateSettings(_Frozen):
    """The weekly retrain's promotion of the live challenger (docs/model-ops.md): only
    on purchases both models scored on days at least ``min_label_maturity`` mature
    (``modelops``' label maturity), with at least ``min_labelled_frauds`` fraud labels
    known by then, and only if the challenger's precision at the champion's recall beats
    the champion's by more than ``min_precision_gain``."""

    enabled: bool = True
    min_labelled_frauds: int = Field(default=30, ge=1)
    # Judge only the purchases of days at least this mature (modelops' label maturity).
    min_label_maturity: float = Field(default=0.8, gt=0.0, le=1.0)
    min_precision_gain: float = Field(default=0.0, ge=0.0, le=1.0)
    # A challenger whose matured evidence is still too thin (fewer than
    # min_labelled_frauds) keeps its place over this many weekly retrains, so its labels
    # can mature (a day reaches 0.8 in about 17 days); 0: each week's version replaces it.
    max_weeks_kept: int = Field(default=3, ge=0)


class ModelSettings(_Frozen):
    """Model platform (the design's Component 4: XGBoost, threshold 0.7, weekly retraining)."""

    name: str = "shopsentry-fraud"
    tracking_uri: str | None = None  # None: sqlite under the data dir
    experiment: str = "shopsentry-fraud"
    validation_days: int = Field(default=7, ge=1)
    review_budget_per_day: int = Field(default=100, ge=1)
    fpr_budget: float = Field(default=0.05, gt=0, lt=1)
    nthread: int = Field(default=2, ge=1, le=256)  # XGBoost training threads
    live_gate: LiveGateSettings = LiveGateSettings()


class WarehouseSettings(_Frozen):
    path: Path | None = None  # None: warehouse.duckdb under the data dir
    dbt_target: Literal["duckdb", "snowflake"] = "duckdb"
    loader_group_id: str = "warehouse-loader"


class LoadSettings(_Frozen):
    """The design, section 3: the load the system is sized for."""

    expected_per_hour: float = Field(default=1000, gt=0)
    peak_per_hour: float = Field(default=3000, gt=0)
    safety_factor: float = Field(default=5, ge=1)
    queue_depth: int = Field(default=1000, ge=1)
    outage_minutes: float = Field(default=20, gt=0)


class SloSettings(_Frozen):
    """The design, section 4, Component 5: the thresholds alerts fire on."""

    end_to_end_ms: float = 500
    prediction_p95_ms: float = 300
    consumer_lag: int = 1000
    false_positive_rate: float = 0.05
    dag_success_rate: float = 0.99
    query_p95_s: float = 30


class ApiSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    demo_mode: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # One POST /v1/events carries at most this many events (413 past it, before any
    # validation); a refused batch lists its first ``max_errors_reported`` problems.
    max_events_per_request: int = Field(default=1000, ge=1)
    max_errors_reported: int = Field(default=50, ge=1)
    # How many recent event ids ingest remembers: a retried post of one of them is
    # acknowledged without being written again.
    recent_event_ids: int = Field(default=100_000, ge=1)
    rate_limit_per_minute: int = Field(default=6000, ge=1)
    cors_origins: tuple[str, ...] = ()
    # Consumer group of the service's alert store. Each store (data dir) needs its own
    # group: replicas that share one would split the alerts between their stores.
    store_group_id: str = "api-alerts"


class NotifierSettings(_Frozen):
    group_id: str = "alert-notifier"
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: SecretStr = SecretStr("")
    webhook_min_severity: Literal["medium", "high", "critical"] = "medium"
    email_min_severity: Literal["medium", "high", "critical"] = "high"
    smtp_host: str | None = None
    smtp_port: int = 25
    email_from: str = "shopsentry@localhost"
    email_to: tuple[str, ...] = ()
    max_attempts: int = Field(default=5, ge=1)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9450, ge=0, le=65535)  # 0: no /metrics endpoint


class HistoryImportSettings(_Frozen):
    """`shopsentry history import`: what a file without these columns gets."""

    # known_at = occurred_at + this, for fraud flags without a known-at column (a typical
    # chargeback delay; training only uses labels known at its as-of time).
    label_delay_days: float = Field(default=7.0, ge=0)
    country: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    payment_method: str = "card"


class LakeSettings(_Frozen):
    """Storage tiers (the design's section on retention): the warehouse keeps ``hot_days``
    of events; older partitions live as compressed Parquet in the lake (warm) and, after
    ``warm_days``, under ``cold_url``. URLs are fsspec URLs (``s3://bucket/prefix``, a
    local path); backups go under ``backup_url``.

    ``url`` None means ``lake/`` in the data dir; the tiers default to ``<url>/warm``,
    ``<url>/cold`` and ``<url>/backups``. Production points ``url`` (or at least
    ``backup_url``) off the machine: a backup in the data dir dies with it."""

    url: str | None = None
    cold_url: str | None = None
    backup_url: str | None = None
    hot_days: int = Field(default=90, ge=1)
    warm_days: int = Field(default=365, ge=1)
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    backups_kept: int = Field(default=24, ge=1)  # a day of hourly backups


class ModelOpsSettings(_Frozen):
    """Live model quality and drift (docs/model-ops.md).

    ``drift_bins`` quantile bins per feature in the training reference;
    ``drift_excluded_features`` are left out of drift because a single day cannot match
    the training mix by construction (a day has one ``day_of_week``);
    ``label_maturity_days``: purchases at least this old count as mature when the
    observed chargeback-delay distribution is estimated. The PSI thresholds are the
    dashboard's highlight and the Prometheus rules' (``deploy/prometheus/alerts.yml``).
    """

    drift_bins: int = Field(default=10, ge=2, le=100)
    # The reference describes the latest days of the model's training data.
    reference_days: float = Field(default=7.0, gt=0)
    drift_excluded_features: tuple[str, ...] = ("day_of_week",)
    top_features: int = Field(default=10, ge=1)
    feature_psi_alert: float = Field(default=0.2, gt=0)
    score_psi_alert: float = Field(default=0.1, gt=0)
    label_maturity_days: float = Field(default=30.0, gt=0)


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "shopsentry"


class Settings(BaseSettings):
    """The effective configuration of one shopsentry process."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPSENTRY_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=lambda: Path("data"))
    bus: str = "local"
    log_fsync: Literal["batch", "always", "never"] = "batch"
    # Embedded log consumer groups: a member silent this long is presumed dead and its
    # partitions move to the others (Kafka's
    # session.timeout.ms; the Kafka backend uses kafka.session_timeout_ms).
    log_session_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    topics: TopicsSettings = TopicsSettings()
    kafka: KafkaSettings = KafkaSettings()
    detector: DetectorSettings = DetectorSettings()
    state: StateSettings = StateSettings()
    model: ModelSettings = ModelSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    load: LoadSettings = LoadSettings()
    slo: SloSettings = SloSettings()
    api: ApiSettings = ApiSettings()
    notifier: NotifierSettings = NotifierSettings()
    history_import: HistoryImportSettings = HistoryImportSettings()
    lake: LakeSettings = LakeSettings()
    modelops: ModelOpsSettings = ModelOpsSettings()

    @field_validator("bus")
    @classmethod
    def _bus_url(cls, value: str) -> str:
        if value == "local" or value.startswith(("local://", "kafka://")):
            return value
        raise ValueError(
            "must be 'local', 'local:///path/to/dir' or 'kafka://host:port[,host:port]'"
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _config_file.get() or os.environ.get("SHOPSENTRY_CONFIG")
        if toml_path:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=read_toml(Path(toml_path))))
        return tuple(sources)

    # Derived locations: one place decides where each part keeps its files.
    @property
    def log_dir(self) -> Path:
        return (
            Path(self.bus.removeprefix("local://"))
            if self.bus.startswith("local://")
            else self.data_dir / "log"
        )

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse.path or self.data_dir / "warehouse.duckdb"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.model.tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_dir(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def kafka_bootstrap(self) -> str | None:
        return self.bus.removeprefix("kafka://") if self.bus.startswith("kafka://") else None

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with secrets masked, for `config show` and logs:
        secret fields, and the userinfo and secret-looking query parameters of any URL."""
        data: dict[str, Any] = redact_data(self.model_dump(mode="json"))
        return data


# The TOML file of the settings being built by load_settings (a context variable, so
# load_settings never writes the process environment).
_config_file: ContextVar[Path | None] = ContextVar("shopsentry_config_file", default=None)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file's tables, or a :class:`ConfigError` naming what is wrong with it."""
    hint = "fix the file or pass another with --config"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", hint=hint) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (bad byte at offset {exc.start})", hint=hint
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", hint=hint) from None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from (in order of precedence) overrides, environment, TOML file.

    Raises :class:`~shopsentry.errors.ConfigError` with the field at fault.
    """
    from pydantic import ValidationError

    if config_file is not None and not config_file.is_file():
        raise ConfigError(
            f"config file {config_file} does not exist", hint="pass an existing TOML file"
        )
    token = _config_file.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"bad config value for {field}: {first['msg']}", hint="see `shopsentry config show`"
        ) from exc
    finally:
        _config_file.reset(token)
