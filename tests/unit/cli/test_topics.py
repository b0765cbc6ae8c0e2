"""`shopsentry topics create | list | describe` on the embedded log: what a person sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shopsentry.bus import BusConfig, open_log
from shopsentry.config import Settings


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopsentry", "--data-dir", str(data_dir), "topics", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_create_list_describe_show_offsets_and_group_lag(tmp_path: Path) -> None:
    created = run(tmp_path, "create", "--replication-factor", "1")
    assert created.returncode == 0, created.stderr
    assert "purchase-events: 3 partitions, RF 1, min ISR 1" in created.stdout

    log = open_log(BusConfig.from_settings(Settings(data_dir=tmp_path)), create_topics=False)
    with log.producer() as producer:
        for i in range(30):
            producer.send("purchase-events", b"{}", key=f"user-{i}".encode())
    consumer = log.consumer("fraud-detector", ["purchase-events"])
    polled = consumer.poll(10, 1.0)
    consumer.commit()
    consumer.close()
    log.close()

    listed = run(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "purchase-events" in listed.stdout and "user-behavior" in listed.stdout

    described = run(tmp_path, "describe", "purchase-events")
    assert described.returncode == 0, described.stderr
    out = described.stdout
    assert "retention.ms" in out and "604800000" in out
    assert "fraud-detector" in out
    # The group's committed offsets and lag add up to what it left unread.
    rows = [line for line in out.splitlines() if "fraud-detector" in line]
    assert len(rows) == 3
    lags = [int(cells[5]) for cells in (row.split("│") for row in rows)]
    assert sum(lags) == 30 - len(polled)


def test_unknown_topic_is_one_line_error(tmp_path: Path) -> None:
    result = run(tmp_path, "describe", "nope")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: unknown topic 'nope' (create it with `shopsentry topics create`)"]
