"""dbt build time of the live-quality and drift models over 30 days x 20,000 users.

Setup (not timed): a simulated history (``--days`` x ``--users``, the simulator's natural
activity) loaded into RAW and built by the hourly ETL; ``ml_features.training_set``
built (the point-in-time feature replay the drift models read); a champion trained on
it and a weaker challenger registered, both with their training references; and one
decision per purchase with the champion's and the challenger's probability (scored
offline by the same scorer the detector uses, inserted into ``raw.decisions``), so
every model has the rows the live detector would have given it.

Timed: ``dbt build --select path:models/monitoring`` (model_scores,
label_maturity_daily, model_quality_daily, model_comparison_daily, feature_values,
feature_drift_daily, score_drift_daily and their tests), as of the history's end.

    .venv/bin/python -m benchmarks.bench_quality_dbt [--days 30] [--users 20000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
START = datetime(2026, 9, 1, tzinfo=UTC)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def _insert_decisions(settings: Any, champion: str, challenger: str) -> int:
    """Score every purchase of the training set with both models into raw.decisions."""
    import numpy as np
    import orjson
    import pyarrow as pa

    from shopsentry.features import FEATURE_NAMES
    from shopsentry.models.registry import RegistryConfig, model_file
    from shopsentry.models.scorer import ModelFiles, build_scorer
    from shopsentry.warehouse.db import connect

    with connect(settings.warehouse_path) as con:
        table = con.sql("select * from ml_features.training_set order by occurred_at").arrow()
        table = table.read_all() if hasattr(table, "read_all") else table
        X = np.column_stack(
            [table.column(n).to_numpy(zero_copy_only=False) for n in FEATURE_NAMES]
        ).astype(np.float32)
        scores = {}
        for version in (champion, challenger):
            raw = model_file(RegistryConfig.from_settings(settings), version).read_bytes()
            scorer = build_scorer(
                raw, version=version, cache_dir=ModelFiles.from_settings(settings).kernel_cache,
                expected_features=FEATURE_NAMES,
            )  # fmt: skip
            scores[version] = scorer.predict(X)
        threshold = settings.detector.threshold
        occurred = table.column("occurred_at").to_pylist()
        rows = []
        for i, event_id in enumerate(table.column("event_id").to_pylist()):
            p, q = float(scores[champion][i]), float(scores[challenger][i])
            decided = occurred[i] + timedelta(milliseconds=80)
            rows.append(
                orjson.dumps(
                    {
                        "event_id": event_id, "probability": p, "model_version": champion,
                        "band": "review" if p >= threshold else "approve", "threshold": threshold,
                        "decided_at": decided.isoformat() + "Z", "challenger_version": challenger,
                        "challenger_probability": q, "served_by": "champion",
                        "challenger_band": "review" if q >= threshold else "approve",
                    }
                ).decode()
            )  # fmt: skip
        now = datetime.now(UTC).replace(tzinfo=None)
        n = len(rows)
        frame = pa.table(
            {
                "_dedupe_key": table.column("event_id"),
                "event_id": table.column("event_id"),
                "event_type": pa.array(["decision"] * n),
                "user_id": table.column("user_id"),
                "source": pa.array(["web"] * n),
                "occurred_at": table.column("occurred_at"),
                "raw_json": pa.array(rows),
                "raw_text": pa.array([None] * n, pa.string()),
                "_topic": pa.array(["decisions"] * n),
                "_partition": pa.array([0] * n, pa.int32()),
                "_offset": pa.array(range(n), pa.int64()),
                "_loaded_at": pa.array([now] * n, pa.timestamp("us")),
            }
        )
        con.register("_bench_decisions", frame)
        con.execute("insert into raw.decisions select * from _bench_decisions")
    return n


def setup(root: Path, days: int, users: int) -> tuple[Any, datetime, dict[str, Any]]:
    from shopsentry.config import ModelSettings, Settings
    from shopsentry.models.training import TrainingConfig, TrainParams, train_and_register
    from shopsentry.pipelines.hourly_etl import hourly_etl, transform
    from shopsentry.pipelines.weekly_model_retrain import build_training_set
    from shopsentry.simulator import Simulator, SimulatorConfig, write_history

    settings = Settings(data_dir=root / "data", log_fsync="never", model=ModelSettings(nthread=2))
    facts: dict[str, Any] = {}
    began = time.perf_counter()
    sim = Simulator(
        SimulatorConfig(
            users=users, start=START, duration_s=days * 86400, events_per_hour=None, seed=30
        )
    )
    files = write_history(sim, root / "history")
    facts["events"], facts["labels"] = files.events, files.labels
    hourly_etl(settings, history=root / "history")
    facts["training_set_rows"] = build_training_set(settings)
    as_of = START + timedelta(days=days)
    champion = train_and_register(
        TrainingConfig.from_settings(settings), use_warehouse=True, as_of=as_of
    )
    weak = TrainParams(n_estimators=25, max_depth=2, nthread=2, seed=5)
    challenger = train_and_register(
        TrainingConfig.from_settings(settings), use_warehouse=True, as_of=as_of, params=weak
    )
    assert champion.version and challenger.version
    facts["decisions"] = _insert_decisions(settings, champion.version, challenger.version)
    transform(
        settings,
        select=["--select", "stg_decisions", "stg_model_reference", "--exclude-resource-type",
                "unit_test"],
        as_of=as_of,
    )  # fmt: skip
    facts["setup_s"] = round(time.perf_counter() - began, 1)
    facts["versions"] = {"champion": champion.version, "challenger": challenger.version}
    return settings, as_of, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, default=None, help="keep the data dir here")
    args = parser.parse_args()

    from shopsentry.pipelines.model_monitoring import monitoring_vars
    from shopsentry.warehouse.db import connect
    from shopsentry.warehouse.dbt import DbtConfig, run_dbt

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        settings, as_of, facts = setup(root, args.days, args.users)
        load_before = _uptime()
        cpu0 = time.process_time()
        started = time.perf_counter()
        result = run_dbt(
            DbtConfig.from_settings(settings),
            ["build", "--select", "path:models/monitoring", "--exclude-resource-type",
             "unit_test", *monitoring_vars(settings, as_of)],
        )  # fmt: skip
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        load_after = _uptime()
        with connect(settings.warehouse_path, read_only=True) as con:
            counts = {
                t: con.execute(f"select count(*) from monitoring.{t}").fetchall()[0][0]
                for t in ("model_quality_daily", "model_comparison_daily",
                          "feature_drift_daily", "score_drift_daily")
            }  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    nodes = sorted(
        ({"node": n.unique_id, "status": n.status, "seconds": round(n.seconds, 2)}
         for n in result.nodes),
        key=lambda n: -n["seconds"],
    )  # fmt: skip
    out = {
        "benchmark": "bench_quality_dbt",
        "command": f".venv/bin/python -m benchmarks.bench_quality_dbt --days {args.days}"
        f" --users {args.users}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "uptime_before": load_before,
        "uptime_after": load_after,
        "days": args.days,
        "users": args.users,
        "setup": facts,
        "dbt_build_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "models_built": result.models_built,
        "tests_passed": result.tests_passed,
        "rows": counts,
        "nodes": nodes,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_quality_dbt.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    lines = [
        f"# bench_quality_dbt — live quality and drift models, {args.days} days x "
        f"{args.users:,} users",
        "",
        f"Command: `{out['command']}`",
        f"Date: {out['date']} · commit {out['commit']} · nproc {out['nproc']} · "
        f"{out['platform']} · Python {out['python']}",
        f"Load: before `{load_before}`; after `{load_after}`",
        "",
        f"Setup (not timed, {facts['setup_s']} s): {facts['events']:,} simulated events, "
        f"{facts['training_set_rows']:,} purchases in ml_features.training_set, "
        f"{facts['decisions']:,} decisions scored by champion v{facts['versions']['champion']}"
        f" and challenger v{facts['versions']['challenger']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| dbt build of models/monitoring ({result.models_built} models, "
        f"{result.tests_passed} tests), wall clock | **{out['dbt_build_s']} s** |",
        f"| CPU time of this process | {out['cpu_s']} s |",
        *(f"| rows in monitoring.{t} | {n:,} |" for t, n in counts.items()),
        "",
        "| node | status | seconds |",
        "|---|---|---|",
        *(f"| {n['node']} | {n['status']} | {n['seconds']} |" for n in nodes),
        "",
    ]
    (RESULTS / "bench_quality_dbt.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
