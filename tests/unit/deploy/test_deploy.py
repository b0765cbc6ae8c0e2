"""deploy/: the compose file, Prometheus config and alert rules, Grafana provisioning.

Structural checks always run; promtool (Debian package `prometheus`) checks the rules'
PromQL and runs their unit tests, and `docker compose config` / `docker-compose config`
parses the compose file, where those tools exist (none needs a Docker engine).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO, require

from shopsentry.config import Settings
from shopsentry.monitoring.metrics import DESIGN_METRICS

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "shopsentry.json"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
METRIC = re.compile(r"\bshopsentry_[a-z_]+")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "kafka-init",
        "redis",
        "airflow",
        "prometheus",
        "grafana",
        "detect",
        "serve",
        "notify",
    ):
        assert name in services, name


def test_kafka_is_a_three_node_kraft_quorum(compose: dict[str, Any]) -> None:
    nodes = {name: compose["services"][name] for name in ("kafka-1", "kafka-2", "kafka-3")}
    ids = set()
    for name, service in nodes.items():
        env = service["environment"]
        assert service["image"].startswith("apache/kafka:")
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(v.split("@")[1] for v in voters) == [
            "kafka-1:9093",
            "kafka-2:9093",
            "kafka-3:9093",
        ]
        assert f"{env['KAFKA_NODE_ID']}@{name}:9093" in voters
        assert f"PLAINTEXT://{name}:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        ids.add(env["KAFKA_NODE_ID"])
    assert ids == {1, 2, 3}
    assert len({n["environment"]["CLUSTER_ID"] for n in nodes.values()}) == 1
    init = compose["services"]["kafka-init"]
    assert init["image"].startswith("apache/kafka:")
    assert {k: v["condition"] for k, v in init["depends_on"].items()} == {
        f"kafka-{i}": "service_healthy" for i in (1, 2, 3)
    }


def test_published_ports_bind_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    build = compose["x-shopsentry"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_shopsentry_services_wait_for_topics_and_use_kafka(compose: dict[str, Any]) -> None:
    for name in ("detect", "serve", "notify", "airflow"):
        service = compose["services"][name]
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        bus = service["environment"]["SHOPSENTRY_BUS"]
        assert bus == "kafka://kafka-1:19092,kafka-2:19092,kafka-3:19092"
        Settings(bus=bus)  # a value the settings accept


def test_topic_script_matches_the_settings() -> None:
    script = (DEPLOY / "kafka" / "create-topics.sh").read_text()
    table = script.split('TOPICS="', 1)[1].split('"', 1)[0]
    rows = {}
    for line in table.strip().splitlines():
        name, partitions, days, policy = line.split()
        retention = -1 if days == "-1" else int(days) * 86_400_000
        rows[name] = (int(partitions), retention, policy)
    expected = {
        t.name: (t.partitions, t.retention_ms, t.cleanup_policy) for t in Settings().topics.all()
    }
    assert rows == expected
    assert "--replication-factor 3" in script
    assert "min.insync.replicas=2" in script


def test_prometheus_scrapes_every_shopsentry_process() -> None:
    settings = Settings()
    config = load(PROMETHEUS)
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["shopsentry-detector"] == [
        f"detect:{9400 + i}" for i in range(settings.detector.workers)
    ]
    assert targets["shopsentry-api"] == [f"serve:{settings.api.port}"]
    assert targets["shopsentry-notifier"] == [f"notify:{settings.notifier.metrics_port}"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def _defined_metric_families() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "src" / "shopsentry").rglob("*.py"):
        names.update(re.findall(r'"(shopsentry_[a-z_]+)"', path.read_text()))
    return names


def _family(sample: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def test_alert_rules_cover_the_seed_thresholds() -> None:
    rules = {r["alert"]: r for g in load(ALERTS)["groups"] for r in g["rules"]}
    assert "shopsentry_consumer_lag" in rules["ConsumerLagHigh"]["expr"]
    assert "shopsentry_consumer_lag) > 1000" in rules["ConsumerLagHigh"]["expr"]
    assert "shopsentry_api_observed_detector_lag) > 1000" in rules["ConsumerLagHigh"]["expr"]
    assert rules["PredictionLatencyP95High"]["expr"].rstrip().endswith("> 0.3")
    assert "histogram_quantile(0.95" in rules["PredictionLatencyP95High"]["expr"]
    assert rules["EndToEndLatencyP95High"]["expr"].rstrip().endswith("> 0.5")
    assert rules["FalsePositiveRateHigh"]["expr"].rstrip().endswith("> 0.05")
    assert 'shopsentry_dag_runs_total{state="failed"}' in rules["DagRunFailed"]["expr"]
    assert "increase(" in rules["DagRunFailed"]["expr"]
    defined = _defined_metric_families()
    for rule in rules.values():
        for sample in METRIC.findall(rule["expr"]):
            assert _family(sample) in defined, (
                f"{rule['alert']} uses {sample}, defined nowhere in src/"
            )


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_panels_are_wired_to_the_provisioned_datasource(
    dashboard: dict[str, Any],
) -> None:
    uid = load(DATASOURCE)["datasources"][0]["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid
            assert target["expr"].count("(") == target["expr"].count(")")
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_dashboard_shows_every_design_metric_and_only_real_ones(dashboard: dict[str, Any]) -> None:
    used = {
        _family(sample)
        for panel in _panels(dashboard)
        for target in panel["targets"]
        for sample in METRIC.findall(target["expr"])
    }
    defined = _defined_metric_families()
    assert used <= defined, f"dashboard queries undefined metrics: {sorted(used - defined)}"
    seed = {_family(name) for name in DESIGN_METRICS}
    assert seed <= used, f"the design's metrics without a panel: {sorted(seed - used)}"


def _promtool() -> str:
    path = shutil.which("promtool")
    require(
        path is not None, "promtool", "install the Debian package prometheus (make system-deps)"
    )
    assert path is not None
    return path


def test_promtool_checks_config_and_rules() -> None:
    promtool = _promtool()
    subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_alert_rule_unit_tests_pass() -> None:
    promtool = _promtool()
    out = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = _promtool()
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}:{target['refId'].lower()}",
            "expr": target["expr"],
        }
        for panel in _panels(dashboard)
        for target in panel["targets"]
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``compose config`` of the stack with only ``env`` set (no Docker engine needed)."""
    command = _compose_command()
    require(
        command is not None,
        "docker compose (plugin) or docker-compose",
        "install Debian's docker-compose (make system-deps)",
    )
    assert command is not None
    return subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env},
        timeout=120,
    )


def test_docker_compose_config_parses_the_file() -> None:
    out = compose_config({"GRAFANA_ADMIN_PASSWORD": "test-only"})
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert {"kafka-1", "kafka-2", "kafka-3", "kafka-init"} <= set(resolved["services"])
    assert (
        resolved["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "test-only"
    )


def test_docker_compose_refuses_to_start_grafana_without_a_password() -> None:
    out = compose_config({})
    assert out.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in out.stderr


def test_dockerfile_copies_what_exists_and_runs_unprivileged() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert "\nUSER shopsentry" in dockerfile
    assert 'ENTRYPOINT ["shopsentry"]' in dockerfile
