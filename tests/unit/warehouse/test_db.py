"""A writer waits for a reader in another process that holds the DuckDB file briefly
(the API's dashboard queries and model-ops gauges), instead of failing its job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shopsentry.config import Settings
from shopsentry.warehouse.db import connect

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_writer_waits_for_a_short_reader_in_another_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with connect(settings.warehouse_path) as con:
        con.execute("create table t (x int)")
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(settings.warehouse_path), "1.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "holding"
        with connect(settings.warehouse_path) as con:  # would raise WarehouseBusy at once before
            con.execute("insert into t values (1)")
            assert con.execute("select count(*) from t").fetchone() == (1,)
    finally:
        reader.kill()
        reader.wait()
