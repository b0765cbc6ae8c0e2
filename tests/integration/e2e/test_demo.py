"""`shopsentry demo` end to end on embedded defaults: history, first model, services,
live traffic, batch jobs, and a summary; it must stop by itself and leave a report."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_runs_the_whole_system_and_summarises(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "SHOPSENTRY_DATA_DIR": str(data), "SHOPSENTRY_BUS": "local"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsentry",
            "demo",
            "--duration",
            "45s",
            "--users",
            "1000",
            "--history-days",
            "21",
            "--speed",
            "120",
            "--port",
            str(_free_port()),
            "--etl-every",
            "20s",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "dashboard: http://127.0.0.1:" in out
    summary = out[out.index("\nsummary") :]
    processed = next(line for line in summary.splitlines() if "events processed" in line)
    assert int(processed.split()[-1].replace(",", "")) > 0, summary
    assert "end-to-end latency p95" in summary
    assert list((data / "reports").glob("fraud-report-*.html")), "daily report missing"
    assert (data / "models" / "champion.json").is_file()
    logs = {p.name: p.read_text() for p in (data / "demo-logs").glob("*.log")}
    assert {"serve.log", "detect.log", "notify.log", "simulate.log"} <= set(logs)
    assert not any("Traceback" in text for text in logs.values()), logs
