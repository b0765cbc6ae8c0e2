"""
### hourly_backup

The design's DR plan, every hour: a backup of everything the event log cannot rebuild
(warehouse, alert read model with reviews, API keys, model registry, feature state with
its applied offsets, run history, notifier ledger) to `lake.backup_url`, with a
manifest of checksums and the log offsets each part reflects; then the backup is
verified and all but the newest `lake.backups_kept` are deleted. An hourly backup
bounds the RPO of what only lives in those stores at one hour.

* **Retries**: a failed attempt leaves a partial backup (no manifest) that restore
  ignores and the next success prunes.
* **Restore**: `shopsentry backup restore`, see docs/runbook.md.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from shopsentry.pipelines.orchestration import (
    DEFAULT_ARGS,
    START_DATE,
    on_dag_failure,
    on_dag_success,
    retry_by_error,
    sla_deadline,
)


@dag(
    dag_id="hourly_backup",
    schedule="@hourly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["shopsentry", "backup", "dr"],
    doc_md=__doc__,
    deadline=sla_deadline("hourly_backup"),
    on_success_callback=on_dag_success,
    on_failure_callback=on_dag_failure,
)
def hourly_backup() -> None:
    @task
    @retry_by_error
    def create_backup() -> dict[str, Any]:
        from shopsentry.backup import create_backup as create
        from shopsentry.pipelines.orchestration import settings_from_env

        manifest = create(settings_from_env())
        return {"id": manifest.id, "parts": sorted(manifest.parts), "seconds": manifest.seconds}

    @task
    @retry_by_error
    def verify_backup(created: dict[str, Any]) -> dict[str, Any]:
        from shopsentry.backup import BackupInvalid
        from shopsentry.backup import verify_backup as verify
        from shopsentry.pipelines.orchestration import settings_from_env

        backup_id, problems = verify(settings_from_env(), created["id"])
        if problems:
            raise BackupInvalid(backup_id, problems)
        return {"id": backup_id, "verified": True}

    verify_backup(create_backup())


hourly_backup()
