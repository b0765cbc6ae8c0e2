"""Debian's ``prometheus`` over the stack's own configuration, pointed at loopback.

``deploy/prometheus/prometheus.yml`` is read and rewritten only where a test must differ
from the compose stack: each target ``service:port`` becomes ``127.0.0.1:<the port the
test started that service on>``, scrapes and rule evaluation run every second, and the
alert rules are a copy of ``deploy/prometheus/alerts.yml`` whose ``for:`` durations are
shortened. Every expression is the production one, read from the file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import REPO, require
from tests.integration.ops.airflow_server import free_port, wait_for

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
FAST_FOR = "5s"  # "pending" lasts several 1 s evaluations, seen even on a loaded machine


def fast_rules(alerts: Path = PROMETHEUS_DIR / "alerts.yml") -> dict[str, Any]:
    """The production rules with every ``for:`` cut to :data:`FAST_FOR`."""
    rules: dict[str, Any] = yaml.safe_load(alerts.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FAST_FOR
    return rules


def loopback_config(ports: Mapping[str, int], rules_file: Path, own_port: int) -> dict[str, Any]:
    """prometheus.yml with ``service:port`` targets moved to the ports in ``ports``.

    ``ports`` maps a compose service name to the port the test started it on; a service
    with several targets (the detector: base + worker index) keeps their offsets.
    """
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules_file)]
    for job in config["scrape_configs"]:
        job["scrape_timeout"] = "1s"
        for static in job["static_configs"]:
            moved = []
            base = min(int(t.rpartition(":")[2]) for t in static["targets"])
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                if host == "localhost":
                    moved.append(f"127.0.0.1:{own_port}")
                    continue
                assert host in ports, f"the test starts no {host} for {job['job_name']}"
                moved.append(f"127.0.0.1:{ports[host] + int(port) - base}")
            static["targets"] = moved
    return config


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now, or None when it has no sample."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def alert_states(self, name: str) -> set[str]:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {a["state"] for a in alerts if a["labels"]["alertname"] == name}

    def targets_up(self) -> dict[str, bool]:
        body = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()
        return {t["scrapeUrl"]: t["health"] == "up" for t in body["data"]["activeTargets"]}

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
        def alive() -> Any:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            return check()

        return wait_for(alive, what, timeout)


def running_prometheus(root: Path, ports: Mapping[str, int]) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    require(
        binary is not None, "prometheus", "install the Debian package prometheus (make system-deps)"
    )
    assert binary is not None
    own = free_port()
    rules = root / "alerts.yml"
    rules.write_text(yaml.safe_dump(fast_rules()))
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(loopback_config(ports, rules, own)))
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{own}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{own}", process, log)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        server.wait(ready, "Prometheus to answer /-/ready", 120)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
