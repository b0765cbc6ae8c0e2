"""`shopsentry demo` end to end on embedded defaults: history, first model, services,
live traffic, batch jobs, and a summary. Stopped the way a person stops it (Ctrl-C, a
SIGINT to the terminal's foreground process group), it must still read its workers'
metrics, print a complete summary, exit 0 and leave a report."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _decided(url: str) -> float:
    """Purchases the workers have decided so far (other events are processed, not decided)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("shopsentry_decisions_total")
    )


class _Lines:
    """The demo's output, read line by line in a thread so waiting never blocks on it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            assert time.monotonic() < deadline, f"{needle!r} not printed:\n{self.text()[-3000:]}"
            time.sleep(0.2)

    def text(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        self._thread.join(timeout=30)


@pytest.mark.timeout(1500)
def test_demo_runs_the_whole_system_and_summarises_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    metrics_port = _free_port()
    env = {
        **os.environ,
        "SHOPSENTRY_DATA_DIR": str(data),
        "SHOPSENTRY_BUS": "local",
        "PYTHONUNBUFFERED": "1",  # its lines arrive as printed, as on a terminal
        "SHOPSENTRY_DETECTOR__METRICS_PORT": str(metrics_port),
        "SHOPSENTRY_NOTIFIER__METRICS_PORT": str(_free_port()),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopsentry",
            "demo",
            "--duration",
            "300s",  # an upper bound: the test stops it with Ctrl-C first
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
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,  # like a terminal's foreground job: Ctrl-C goes to this group
    )
    out = _Lines(proc)
    try:
        out.wait_for("dashboard: http://127.0.0.1:", timeout=900)
        deadline = time.monotonic() + 300
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        while _decided(url) <= 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    text = out.text()
    assert proc.returncode == 0, text[-3000:]
    assert "finishing" in text
    summary = text[text.index("\nsummary") :]
    processed = next(line for line in summary.splitlines() if "events processed" in line)
    assert int(processed.split()[-1].replace(",", "")) > 0, summary
    assert "end-to-end latency p95" in summary
    assert "none measured yet" not in summary, summary
    assert "fraud caught (simulator truth)" in summary
    assert list((data / "reports").glob("fraud-report-*.html")), "daily report missing"
    assert (data / "models" / "champion.json").is_file()
    logs = {p.name: p.read_text() for p in (data / "demo-logs").glob("*.log")}
    assert {"serve.log", "detect.log", "notify.log", "simulate.log"} <= set(logs)
    assert not any("Traceback" in text for text in logs.values()), logs
