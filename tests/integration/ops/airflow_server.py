"""A real Airflow 3 deployment over ``dags/`` for the scheduler tests.

The same components ``airflow standalone`` starts, started one by one so each is ours to
stop: ``airflow db migrate`` (SQLite), then the scheduler (LocalExecutor), the DAG
processor and the API server, every port on 127.0.0.1 and free, AIRFLOW_HOME in a temp
dir. The API server's SimpleAuthManager writes the admin password to
``AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``; the client reads it from
there and takes a JWT from ``POST /auth/token``, as an operator's script would.

One test-only cluster policy (``airflow_local_settings.py`` in ``AIRFLOW_HOME/config``)
shortens the DAGs' 5-minute retry delay to one second, so a retry happens within the
test; schedules, retries and callbacks are the production DAGs' own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import REPO

T = TypeVar("T")
TEST_POLICY = '''"""Test-only cluster policy: retry after 1 s instead of the DAGs' 5 minutes."""
from datetime import timedelta


def task_policy(task):
    task.retry_delay = timedelta(seconds=1)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 240.0) -> T:
    """Poll ``check`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


@dataclass
class AirflowServer:
    home: Path
    env: dict[str, str]
    url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        airflow = str(Path(sys.executable).with_name("airflow"))
        migrate = subprocess.run(
            [airflow, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=300
        )
        if migrate.returncode != 0:
            raise AssertionError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
        for name in ("scheduler", "dag-processor", "api-server"):
            log = (self.home / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [airflow, name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.home,
            )  # fmt: skip
        wait_for(self._healthy, "the Airflow scheduler, DAG processor and API server", 300)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def _healthy(self) -> bool:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited:\n{self.log(name)[-3000:]}")
        try:
            health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "dag_processor")
        return all(health.get(p, {}).get("status") == "healthy" for p in parts)

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    # -- the REST API (v2) ---------------------------------------------------------
    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def token(self) -> str:
        if self._token is None:
            password = json.loads(self.password_file.read_text())["admin"]
            response = httpx.post(
                f"{self.url}/auth/token",
                json={"username": "admin", "password": password},
                timeout=30,
            )
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
            **kwargs,
        )
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.api("GET", "/dags")["dags"]}

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, logical_date: str | None = None
    ) -> str:
        body = {"logical_date": logical_date, "conf": conf or {}}
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
        return runs

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run

    def finished(self, dag_id: str, run_id: str, timeout: float = 240.0) -> dict[str, Any]:
        """The run once it is in a final state."""
        return wait_for(
            lambda: (r := self.run(dag_id, run_id))["state"] in ("success", "failed") and r,
            f"{dag_id} run {run_id} to finish",
            timeout,
        )

    def tasks(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        body = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: t for t in body["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """One try's task log, where the task runner wrote it under AIRFLOW_HOME."""
        path = (
            self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        ) / f"attempt={try_number}.log"
        return path.read_text(errors="replace")

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        tries: list[dict[str, Any]] = self.api("GET", path)["task_instances"]
        return sorted(tries, key=lambda t: int(t["try_number"]))


def airflow_env(home: Path, api_port: int, extra: dict[str, str]) -> dict[str, str]:
    """The environment every component runs with (tasks and callbacks inherit it)."""
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "airflow_local_settings.py").write_text(TEST_POLICY)
    url = f"http://127.0.0.1:{api_port}"
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        **extra,
    }


def running_airflow(home: Path, extra_env: dict[str, str]) -> Iterator[AirflowServer]:
    """Start the deployment, yield it, stop every component."""
    port = free_port()
    server = AirflowServer(home, airflow_env(home, port, extra_env), f"http://127.0.0.1:{port}")
    try:
        server.start()
        yield server
    finally:
        server.stop()
