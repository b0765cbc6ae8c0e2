"""The DR drill: run the system live, back it up, lose the data dir mid-stream, restore
the latest backup, replay the log, and check nothing happened.

Live: a champion trained into the data dir's registry, the detector and the API (with
its alert read model) as subprocesses, simulator traffic, the warehouse loader, analyst
reviews through the API. The event log lives outside the data dir (as Kafka does), and
so do the backups (as `lake.backup_url` does in production).

After the restore and the replay the warehouse, the alerts with their reviews and the
champion must be what the log says they should be: one row per event, one decision per
purchase — a purchase decided before the disaster keeps that decision through the replay
(the restore's ledger, ``backup/replay.py``) — the reviews taken before the backup still
there. The measured data lost and time to recover go to
``benchmarks/results/dr_drill_<backend>.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopsentry.config import Settings
from shopsentry.models.scorer import ModelFiles
from shopsentry.models.training import TrainingConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"
START = datetime(2026, 3, 1, tzinfo=UTC)
SIM = {"users": 2000, "seed": 3, "fraud_share": 0.03}
HISTORY_DAYS = 21
TIMEOUT_S = 300.0


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """The small TOML subset the config needs (tables, strings, numbers, booleans)."""
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(_toml(value, f"{prefix}{key}."))
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and scalars else ""
    return head + "".join(f"{s}\n" for s in scalars) + "".join(tables)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = TIMEOUT_S,
    explain: Callable[[], object] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    detail = f": {explain()}" if explain is not None else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


@pytest.fixture(params=["local", "kafka+redis"])
def drill(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Settings, Path]:
    unique = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "bus": f"local://{tmp_path / 'log'}",
        "log_session_timeout_ms": 2000,
        "detector": {"group_id": f"detector-{unique}", "model_poll_interval_s": 0.5},
        "api": {"store_group_id": f"api-{unique}"},
        "warehouse": {"loader_group_id": f"loader-{unique}"},
        "model": {"name": f"drill-{unique}", "experiment": f"drill-{unique}", "validation_days": 7},
        "lake": {"url": str(tmp_path / "lake")},
    }
    if request.param == "kafka+redis":
        from shopsentry.config import TopicsSettings

        base = TopicsSettings().with_replication(1)
        config |= {
            "bus": f"kafka://{request.getfixturevalue('kafka_bootstrap')}",
            "topics": {
                name: getattr(base, name).model_dump()
                | {"name": f"{getattr(base, name).name}-{unique}"}
                for name in type(base).model_fields
            },
            "state": {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")},
            "kafka": {"session_timeout_ms": 6000},
        }
    path = tmp_path / "shopsentry.toml"
    path.write_text(_toml(config))
    os.environ["SHOPSENTRY_CONFIG"] = str(path)
    try:
        from shopsentry.bus import BusConfig, open_log, topic_specs
        from shopsentry.config import load_settings

        settings = load_settings(path)
        log = open_log(BusConfig.from_settings(settings))
        log.create_topics(topic_specs(settings.topics))
        log.close()
        yield request.param, settings, path
    finally:
        os.environ.pop("SHOPSENTRY_CONFIG", None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Services:
    """The detector and the API as subprocesses of the CLI, on one config file."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs = config, logs
        self.port = _free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SHOPSENTRY_CONFIG": str(self.config), "PYTHONFAULTHANDLER": "1"}
        for name, args in (
            ("detect", ["detect", "--workers", "1", "--metrics-port", "0"]),
            ("serve", ["serve", "--port", str(self.port)]),
        ):
            out = (self.logs / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "shopsentry", *args],
                env=env,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group: workers die with it
            )
        wait_for(self._healthy, "the API to answer /healthz", 120)

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.logs / f"{name}.log").read_text()[-2000:]
                pytest.fail(f"{name} exited with code {proc.returncode}: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """The disaster: every process of every service, no shutdown, no flush."""
        for proc in self.procs.values():
            _kill_group(proc)
            proc.wait(timeout=30)
        self.procs.clear()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _kill_group(proc)  # a worker the runner left behind
        self.procs.clear()

    def call(self, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def simulate(settings: Settings, start: datetime, hours: float, seed: int) -> dict[str, int]:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.simulator import Simulator, SimulatorConfig, publish

    sim = Simulator(
        SimulatorConfig(
            start=start,
            duration_s=hours * 3600,
            events_per_hour=None,
            **{**SIM, "seed": seed},  # type: ignore[arg-type]
        )
    )
    log = open_log(BusConfig.from_settings(settings))
    try:
        published = publish(sim, log, settings.topics, labels=False)
    finally:
        log.close()
    return {"events": published.events, "purchases": published.purchases}


def lag(settings: Settings, group: str) -> int:
    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    try:
        lags = log.group_lag(group)
        topics = {settings.topics.purchase_events.name, settings.topics.user_behavior.name}
        if group == settings.api.store_group_id:
            topics |= {settings.topics.fraud_alerts.name, settings.topics.decisions.name}
        # A group lists every partition it was assigned, committed or not (an empty one).
        if not topics <= {entry.topic for entry in lags}:
            return 1 << 30
        return sum(e.end_offset - (e.committed or 0) for e in lags if e.topic in topics)
    finally:
        log.close()


def topic_records(settings: Settings, topic: str) -> list[Any]:
    from shopsentry.bus import BusConfig, open_log

    log = open_log(BusConfig.from_settings(settings))
    consumer = log.consumer(None, [topic])
    out: list[Any] = []
    try:
        ends = sum(p.end_offset for p in log.describe_topic(topic).partitions)
        deadline = time.monotonic() + TIMEOUT_S
        while len(out) < ends and time.monotonic() < deadline:
            out.extend(consumer.poll(max_records=5000, timeout=1.0))
    finally:
        consumer.close()
        log.close()
    return out


def caught_up(settings: Settings) -> Callable[[], bool]:
    """The detector has consumed everything and the API's store has read it all."""

    def check() -> bool:
        return (
            lag(settings, settings.detector.group_id) == 0
            and lag(settings, settings.api.store_group_id) == 0
        )

    return check


def lags(settings: Settings) -> Callable[[], object]:
    """What the groups have committed against the end offsets (for a timeout's message)."""

    def explain() -> object:
        from shopsentry.bus import BusConfig, open_log

        log = open_log(BusConfig.from_settings(settings))
        try:
            return {
                group: [
                    (e.topic, e.partition, e.committed, e.end_offset) for e in log.group_lag(group)
                ]
                for group in (settings.detector.group_id, settings.api.store_group_id)
            }
        finally:
            log.close()

    return explain


def decisions_by_event(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every decision emitted per purchase, in log order (one partition per user)."""
    from shopsentry.events.codec import decode_as

    out: dict[str, list[tuple[Any, ...]]] = {}
    for record in sorted(
        topic_records(settings, settings.topics.decisions.name),
        key=lambda r: (r.partition, r.offset),
    ):
        d = decode_as("decision", record.value)
        out.setdefault(d.event_id, []).append((round(d.probability, 9), d.band, d.model_version))
    return out


def stored_decisions(settings: Settings) -> dict[str, dict[str, float]]:
    """The probability each purchase's decision has in the warehouse and the read model."""
    import sqlite3

    from shopsentry.warehouse.db import connect

    with connect(settings.warehouse_path, read_only=True) as con:
        warehouse = dict(
            con.execute(
                "select event_id, (raw_json ->> 'probability')::double from raw.decisions"
            ).fetchall()
        )
    db = sqlite3.connect(settings.data_dir / "api" / "alerts.db")
    try:
        store = dict(db.execute("select event_id, probability from decisions").fetchall())
    finally:
        db.close()
    return {"warehouse": warehouse, "read_model": store}


def _event_of(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


def state_of(settings: Settings) -> dict[str, Any]:
    """What a user of the system sees: warehouse rows, alerts, reviews, the champion."""
    import sqlite3

    from shopsentry.models.registry import RegistryConfig, client
    from shopsentry.models.scorer import read_pointer
    from shopsentry.warehouse.db import connect
    from shopsentry.warehouse.loader import RAW_TABLES

    with connect(settings.warehouse_path, read_only=True) as con:
        raw = {
            t.name: con.execute(
                f"select count(*), count(distinct _dedupe_key) from {t.qualified}"
            ).fetchall()[0]
            for t in RAW_TABLES
        }
    db = sqlite3.connect(settings.data_dir / "api" / "alerts.db")
    try:
        alerts = db.execute("select count(*), count(distinct event_id) from alerts").fetchall()[0]
        decisions = db.execute("select count(*) from decisions").fetchall()[0][0]
        reviews = sorted(
            db.execute("select alert_id, verdict from alerts where status = 'reviewed'").fetchall()
        )
    finally:
        db.close()
    pointer = read_pointer(ModelFiles.from_settings(settings))
    champion_version = client(RegistryConfig.from_settings(settings)).get_model_version_by_alias(
        settings.model.name, "champion"
    )
    return {
        "raw": raw,
        "alerts": alerts,
        "decisions": decisions,
        "reviews": reviews,
        "champion": (pointer.version, pointer.sha256) if pointer else None,
        "registry_champion": str(champion_version.version),
    }


def train_champion(settings: Settings, tmp_path: Path) -> None:
    from shopsentry.models.training import train_and_register
    from shopsentry.simulator import Simulator, SimulatorConfig, write_history

    history = tmp_path / "history"
    sim = Simulator(
        SimulatorConfig(
            start=START - timedelta(days=HISTORY_DAYS),
            duration_s=HISTORY_DAYS * 86400,
            events_per_hour=None,
            **SIM,  # type: ignore[arg-type]
        )
    )
    write_history(sim, history)
    result = train_and_register(TrainingConfig.from_settings(settings), history=history)
    assert result.promoted, result.reason


def test_restore_drill(drill: tuple[str, Settings, Path], tmp_path: Path) -> None:
    from shopsentry.api.security import KeyStore
    from shopsentry.backup import create_backup, restore_backup, verify_backup
    from shopsentry.warehouse.loader import LoaderConfig, load_from_log

    backend, settings, config = drill
    train_champion(settings, tmp_path)
    keys = KeyStore(settings.data_dir / "api" / "keys.db")
    analyst = keys.create("analyst", name="drill").token
    keys.close()
    services = Services(config, tmp_path / "logs")
    services.start()
    try:
        # Phase A: traffic, decisions, alerts in the store, the loader, reviews.
        a = simulate(settings, START, 8, seed=21)
        wait_for(caught_up(settings), "phase A to be decided and stored", explain=lags(settings))
        load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=5.0)
        page = services.call("GET", "/v1/alerts?limit=5", analyst)
        reviewed = [item["alert_id"] for item in page["items"][:3]]
        assert reviewed, "phase A raised no alert to review"
        for i, alert_id in enumerate(reviewed):
            verdict = "confirmed_fraud" if i % 2 == 0 else "false_positive"
            services.call("POST", f"/v1/alerts/{alert_id}/review", analyst, {"verdict": verdict})
        load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=5.0)

        # The hourly backup, taken while the services run.
        manifest = create_backup(settings)
        assert verify_backup(settings, manifest.id)[1] == []
        at_backup = decisions_by_event(settings)

        # Phase B, mid-stream: traffic the system partly processes, then the disaster.
        b = simulate(settings, START + timedelta(hours=8), 4, seed=22)
        wait_for(
            lambda: len(decisions_by_event(settings)) > len(at_backup),
            "the detector to decide phase B purchases",
        )
        # rows only the lost warehouse held
        load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=5.0)
        before_disaster = decisions_by_event(settings)
        services.kill()
        shutil.rmtree(settings.data_dir)
        # Traffic keeps arriving while the system is down.
        c = simulate(settings, START + timedelta(hours=12), 2, seed=23)

        # Recovery: restore the latest backup, start the services, replay, reload.
        recovery_started = time.monotonic()
        restored = restore_backup(settings)
        assert restored.id == manifest.id
        # Every purchase decided since the backup (before the kill) keeps that decision.
        assert restored.decisions_kept >= len(before_disaster) - len(at_backup)
        services.start()
        purchases = a["purchases"] + b["purchases"] + c["purchases"]
        wait_for(caught_up(settings), "the replay to catch up", explain=lags(settings))
        load_from_log(LoaderConfig.from_settings(settings), idle_timeout_s=5.0)
        rto_s = time.monotonic() - recovery_started

        after = state_of(settings)
        decided = decisions_by_event(settings)
        stored = stored_decisions(settings)
    finally:
        services.stop()

    # As if nothing happened: every event once, every purchase decided once, alike.
    purchase_records = topic_records(settings, settings.topics.purchase_events.name)
    n_purchases = len({_event_of(r.value) for r in purchase_records})
    assert after["raw"]["purchase_events"] == (n_purchases, n_purchases)
    n_behaviour = a["events"] + b["events"] + c["events"] - purchases
    assert after["raw"]["user_behavior"] == (n_behaviour, n_behaviour)
    assert after["raw"]["decisions"] == (n_purchases, n_purchases)
    assert len(decided) == n_purchases
    # What users see is the first decision: the warehouse and the read model keep it.
    first = {e: v[0][0] for e, v in decided.items()}
    for where, probabilities in stored.items():
        assert len(probabilities) == n_purchases, where
        wrong = [e for e, p in probabilities.items() if round(p, 9) != first[e]]
        assert not wrong, f"{where} kept a replayed decision for {wrong[:5]}"
    # Same decisions: every purchase has one decision on the log, and one decided before
    # the disaster (before the backup or after it, replayed since) has the one it had.
    replayed = {e: v for e, v in decided.items() if len(v) > 1}
    assert not replayed, f"{len(replayed)} purchases decided twice: {list(replayed.items())[:3]}"
    changed = [e for e, v in before_disaster.items() if decided[e] != v]
    assert not changed, f"{len(changed)} purchases changed decision: {changed[:5]}"
    assert len(before_disaster) > len(at_backup), "no purchase was decided after the backup"
    alert_records = topic_records(settings, settings.topics.fraud_alerts.name)
    n_alerts = len({_event_of(r.value) for r in alert_records})
    assert after["alerts"] == (n_alerts, n_alerts)
    assert after["raw"]["fraud_alerts"] == (n_alerts, n_alerts)
    assert after["decisions"] == n_purchases
    assert [alert_id for alert_id, _ in after["reviews"]] == sorted(reviewed)
    assert after["raw"]["reviews"][0] == len(reviewed)
    assert after["champion"] is not None and after["registry_champion"] == after["champion"][0]

    record = {
        "backend": backend,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "pytest tests/integration/dr/test_restore_drill.py -k "
        + ("local" if backend == "local" else "kafka"),
        "nproc": os.cpu_count(),
        "load_average_1m_5m_15m": [round(x, 2) for x in os.getloadavg()],
        "events": {
            "before_backup": a["events"],
            "after_backup": b["events"],
            "while_down": c["events"],
        },
        "backup_seconds": manifest.seconds,
        "backup_parts": sorted(manifest.parts),
        "decided_before_disaster": len(before_disaster),
        "restore_seconds": restored.seconds,
        "purchases_replayed_with_their_decision": len(before_disaster) - len(at_backup),
        "decisions_kept_from_the_log": restored.decisions_kept,
        "purchases_decided_twice": len(replayed),
        "purchases_with_another_decision": len(changed),
        "rto_seconds": round(rto_s, 1),
        "rpo": {
            "log_retained_events_lost": 0,
            "reviews_lost": len(reviewed) - len(after["reviews"]),
            "non_replayable_window": "since the last backup (hourly: at most 1 h)",
        },
        "alerts_after": after["alerts"][0],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"dr_drill_{backend.replace('+', '_')}.json").write_text(
        json.dumps(record, indent=2) + "\n"
    )
