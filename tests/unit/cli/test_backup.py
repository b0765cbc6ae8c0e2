"""`shopsentry backup` at the CLI edge: one line per outcome, exit 1 on a bad backup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def shopsentry(data: Path, lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOPSENTRY_DATA_DIR": str(data), "SHOPSENTRY_LAKE__URL": str(lake)}
    return subprocess.run(
        [sys.executable, "-m", "shopsentry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_create_list_verify_restore_and_a_corrupt_backup_refused(tmp_path: Path) -> None:
    import sqlite3

    data, lake = tmp_path / "data", tmp_path / "lake"
    (data / "api").mkdir(parents=True)
    db = sqlite3.connect(data / "api" / "keys.db")
    db.execute("create table keys (id text)")
    db.commit()
    db.close()

    created = shopsentry(data, lake, "backup", "create")
    assert created.returncode == 0, created.stderr
    backup_id = created.stdout.split()[1].rstrip(":")
    assert "api_keys" in created.stdout
    listed = shopsentry(data, lake, "backup", "list")
    assert backup_id in listed.stdout and "complete" in listed.stdout
    assert shopsentry(data, lake, "backup", "verify").stdout.strip().endswith("intact")

    archive = lake / "backups" / backup_id / "api_keys.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-10])  # a truncated upload
    for command in (("verify", backup_id), ("restore", backup_id, "--yes")):
        result = shopsentry(data, lake, "backup", *command)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "corrupt or partial" in lines[0], result.stderr
        assert "Traceback" not in result.stderr

    missing = shopsentry(data, lake, "backup", "restore", "nope", "--yes")
    assert missing.returncode == 1 and "no backup 'nope'" in missing.stderr
