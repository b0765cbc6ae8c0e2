"""`shopsentry rules` and `shopsentry lists` on the embedded log: what an analyst sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shopsentry.bus import BusConfig, open_log
from shopsentry.config import Settings
from shopsentry.rules.control import read_rule_set


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopsentry", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def current(data_dir: Path):
    settings = Settings(data_dir=data_dir)
    log = open_log(BusConfig.from_settings(settings))
    try:
        return read_rule_set(log, settings.topics.rules.name)
    finally:
        log.close()


def test_a_rule_is_saved_in_shadow_activated_and_listed(tmp_path: Path) -> None:
    added = run(tmp_path, "rules", "add", "big", "purchase.amount > 500.0", "--action", "block")
    assert added.returncode == 0, added.stderr
    assert "saved (shadow); rule set version 1" in added.stdout
    activated = run(tmp_path, "rules", "activate", "big")
    assert activated.returncode == 0 and "version 2" in activated.stdout
    rule_set = current(tmp_path)
    assert rule_set.version == 2 and rule_set.rule("big").mode == "active"
    listed = run(tmp_path, "rules", "list")
    assert "big" in listed.stdout and "active" in listed.stdout


def test_a_bad_rule_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    bad = run(tmp_path, "rules", "add", "typo", "purchase.amout > 1.0")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: 1:10: unknown field 'purchase.amout'")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert current(tmp_path).version == 0
    missing = run(tmp_path, "rules", "activate", "nope")
    assert missing.returncode == 1 and "no rule named 'nope'" in missing.stderr


def test_list_import_reports_every_bad_row_and_keeps_the_good_ones(tmp_path: Path) -> None:
    csv = tmp_path / "blocks.csv"
    csv.write_text(
        "list,entity,value,reason,expires_at\n"
        "block,card,c1,chargeback,\n"
        "block,planet,x,,\n"
        "allow,user,u7,vip,2099-01-01T00:00:00Z\n"
    )
    imported = run(tmp_path, "lists", "import", str(csv))
    assert imported.returncode == 1  # some rows were rejected
    assert f"{csv}:3: entity" in imported.stderr
    assert "2 entries imported, 1 rejected" in imported.stdout
    removed = run(tmp_path, "lists", "remove", "block", "card", "c1")
    assert removed.returncode == 0, removed.stderr
    shown = run(tmp_path, "lists", "show")
    assert "u7" in shown.stdout and "c1" not in shown.stdout
