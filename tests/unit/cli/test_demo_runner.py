"""The demo's parts run in their own process groups (a terminal Ctrl-C reaches the demo
alone, so the summary can still be read), ports are checked before anything starts, and
the report covers the live traffic's days."""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shopsentry.cli.demo import DEMO_FRAUD_SHARE, DemoRunner
from shopsentry.config import Settings
from shopsentry.errors import ConfigError


def runner(tmp_path: Path, **api: object) -> DemoRunner:
    settings = Settings(data_dir=tmp_path, api=api or {})  # type: ignore[arg-type]
    return DemoRunner(settings, speed=60.0, users=10, seed=1)


def test_parts_start_in_their_own_process_group(tmp_path: Path) -> None:
    demo = runner(tmp_path)
    demo._cli = lambda *args: [sys.executable, "-c", "import time; time.sleep(30)"]  # type: ignore[method-assign]
    proc = demo._start("sleeper")
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    finally:
        demo.shutdown()
    assert proc.poll() is not None


def test_a_taken_port_stops_the_demo_before_it_starts(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 \\(the API\\) is taken"):
            runner(tmp_path, port=port).check_ports()


def test_the_report_days_follow_the_accelerated_clock(tmp_path: Path) -> None:
    demo = runner(tmp_path)
    demo.live_since = datetime(2026, 12, 1, 23, 50, tzinfo=UTC)
    demo.live_until = demo.live_since + timedelta(seconds=5)  # 5 simulated minutes
    assert [d.isoformat() for d in demo.live_days()] == ["2026-12-01"]
    # 20 wall minutes at 60x is 20 simulated hours: the live traffic reached the next day
    demo.live_until = demo.live_since + timedelta(minutes=20)
    assert [d.isoformat() for d in demo.live_days()] == ["2026-12-01", "2026-12-02"]


def test_the_demo_fraud_share_is_above_the_seeds() -> None:
    assert DEMO_FRAUD_SHARE > 0.015


def test_a_part_that_dies_at_start_fails_the_demo_in_one_line(tmp_path: Path) -> None:
    demo = runner(tmp_path)
    demo._cli = lambda *args: [sys.executable, "-c", "print('port in use'); raise SystemExit(3)"]  # type: ignore[method-assign]
    proc = demo._start("serve")
    with pytest.raises(ConfigError, match=r"serve could not start \(exit 3\): port in use"):
        demo.wait_ready("serve", proc, ["http://127.0.0.1:9/never"])
    demo.shutdown()


def test_parts_do_not_outlive_a_killed_demo(tmp_path: Path) -> None:
    import subprocess
    import time

    script = f"""
import sys, time
from shopsentry.cli.demo import DemoRunner
from shopsentry.config import Settings
demo = DemoRunner(Settings(data_dir={str(tmp_path)!r}), speed=1.0, users=1, seed=1)
demo._cli = lambda *a: [sys.executable, "-c", "import time; time.sleep(60)"]
print("pid", demo._start("sleeper").pid, flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = next(int(line.split()[1]) for line in parent.stdout if line.startswith("pid "))
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, 9)
    raise AssertionError("the part outlived the demo")
