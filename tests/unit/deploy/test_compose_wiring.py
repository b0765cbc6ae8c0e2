"""The compose stack's wiring: every address Prometheus (and Grafana) dials is one a
container actually listens on, and on an interface its peers can reach.

The compose file is rendered by the compose client (anchors, merges and ``${...}``
defaults resolved as Docker would), then each shopsentry service's command line is
parsed by the real CLI with the service's environment, so the bind address and port come
from the same option parsing, env vars and Settings defaults the container would use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from tests.unit.deploy.test_deploy import DATASOURCE, PROMETHEUS, compose_config, load

from shopsentry.cli import app
from shopsentry.config import Settings

# Prometheus's own default listen address (its compose command does not change it).
PROMETHEUS_LISTEN = ("0.0.0.0", 9090)  # the container side, as Prometheus binds it
REACHABLE_FROM_PEERS = {"0.0.0.0", "::", ""}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    out = compose_config({"GRAFANA_ADMIN_PASSWORD": "test-only"})
    assert out.returncode == 0, out.stderr
    services: dict[str, Any] = yaml.safe_load(out.stdout)["services"]
    return services


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Only the container's SHOPSENTRY_* variables, as the CLI would see them inside it."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("SHOPSENTRY_")]:
        del os.environ[name]
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _commands() -> dict[str, Any]:
    """The CLI's subcommands as the click commands Typer builds (options, envvars, defaults)."""
    commands: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return commands


def _listens(service: dict[str, Any]) -> set[tuple[str, int]]:
    """(host, port) pairs the shopsentry command of ``service`` serves HTTP on: its
    options where given, else its Settings (the CLI's options only override them)."""
    name, *args = [str(a) for a in service["command"]]
    command = _commands()[name]
    with _environment(service.get("environment") or {}):
        params = command.make_context(name, list(args)).params
        settings = Settings()
    if name == "detect":
        workers = params["workers"] or settings.detector.workers
        base = _given(params["metrics_port"], settings.detector.metrics_port)
        host = params["metrics_host"] or settings.detector.metrics_host
        return {(host, base + i) for i in range(workers)}
    if name == "serve":
        return {(params["host"] or settings.api.host, params["port"] or settings.api.port)}
    if name == "notify":
        port = _given(params["metrics_port"], settings.notifier.metrics_port)
        return {(params["metrics_host"] or settings.notifier.metrics_host, port)}
    raise AssertionError(f"no listen rule for `shopsentry {name}`")


def _given(option: int | None, setting: int) -> int:
    return setting if option is None else option


def _reachable(listens: set[tuple[str, int]], port: int) -> bool:
    return any(p == port and host in REACHABLE_FROM_PEERS for host, p in listens)


def test_every_scrape_target_is_a_port_its_service_listens_on_for_peers(
    rendered: dict[str, Any],
) -> None:
    targets = [
        (job["job_name"], target)
        for job in load(PROMETHEUS)["scrape_configs"]
        for sc in job["static_configs"]
        for target in sc["targets"]
    ]
    assert targets
    for job, target in targets:
        host, _, port = target.rpartition(":")
        if host == "localhost":  # Prometheus scraping itself inside its own container
            assert job == "prometheus"
            assert int(port) == PROMETHEUS_LISTEN[1]
            continue
        assert host in rendered, f"{job} scrapes {target}: no service named {host}"
        listens = _listens(rendered[host])
        assert _reachable(listens, int(port)), (
            f"{job} scrapes {target}, but {host} listens on {sorted(listens)}"
        )


def test_every_detector_worker_is_scraped(rendered: dict[str, Any]) -> None:
    scraped = {
        target
        for job in load(PROMETHEUS)["scrape_configs"]
        for sc in job["static_configs"]
        for target in sc["targets"]
    }
    served = {f"detect:{port}" for _, port in _listens(rendered["detect"])}
    assert served <= scraped, f"unscraped workers: {sorted(served - scraped)}"


def test_grafana_reads_the_prometheus_service(rendered: dict[str, Any]) -> None:
    url = urlsplit(load(DATASOURCE)["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.hostname in rendered
    assert url.port == PROMETHEUS_LISTEN[1]
    command = " ".join(rendered["prometheus"].get("command") or [])
    assert "--web.listen-address" not in command  # so the default above holds


def test_serve_is_not_in_demo_mode_by_default(rendered: dict[str, Any]) -> None:
    env = rendered["serve"]["environment"]
    with _environment(env):
        assert Settings().api.demo_mode is False
    assert "--demo" not in [str(a) for a in rendered["serve"]["command"]]


def test_metrics_host_default_is_loopback_outside_compose() -> None:
    """Off the compose network the endpoints stay on loopback (nothing else set)."""
    for name in ("detect", "notify"):
        assert {host for host, _port in _listens({"command": [name]})} == {"127.0.0.1"}, name
