"""DuckDB connections to the warehouse file, and the errors the warehouse raises.

DuckDB lets one process write a database file, or many processes read it. Every job
therefore opens its connection for the duration of one step and closes it right after
(the loader before dbt runs, dbt before the report reads); the API opens read-only
connections per request. A connection refused because another process holds the lock is
a :class:`WarehouseBusy`, which is retryable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopsentry.errors import TerminalError, TransientError

if TYPE_CHECKING:
    import duckdb


logger = logging.getLogger(__name__)


class WarehouseError(TerminalError):
    """The warehouse file or a statement against it failed in a way retrying cannot fix."""


class WarehouseBusy(TransientError):
    """Another process holds the DuckDB write lock; retry once it is done."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"warehouse {path} is locked by another process",
            hint="DuckDB allows one writer: wait for the running job to finish, then retry",
        )
        self.path = path


class WarehouseMissing(TerminalError):
    """A read-only caller asked for a warehouse that was never built."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no warehouse at {path}",
            hint="run `shopsentry batch run hourly_etl` (or `shopsentry batch load`) first",
        )
        self.path = path


class DbtFailed(TerminalError):
    """dbt could not run (bad project, compile error, a model that failed to build)."""

    def __init__(
        self, message: str, *, failures: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.failures = failures or []


class DataQualityFailed(TerminalError):
    """A dbt test or a source freshness check failed: the data is not fit to publish."""

    def __init__(self, failures: list[str], *, hint: str | None = None) -> None:
        shown = "; ".join(failures[:5]) + (
            f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        )
        super().__init__(
            f"{len(failures)} data-quality check(s) failed: {shown}",
            hint=hint
            or "inspect the failing rows with `dbt test --store-failures` or the quarantine",
        )
        self.failures = failures


@contextmanager
def connect(warehouse: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse file ``warehouse`` that is closed when the block ends.

    Sessions run in UTC so timestamps parsed from events (always UTC) are stored as the
    same wall-clock values that Snowflake's TIMESTAMP_NTZ would hold.
    """
    import duckdb

    path = warehouse
    if read_only and not path.exists():
        raise WarehouseMissing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(duckdb, path, read_only)
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute("set enable_progress_bar = false")
        yield con
    finally:
        con.close()


# Readers (the API's dashboard queries and its model-ops gauges) hold the file for
# milliseconds: a writer waits that long for them rather than failing its job.
_WRITER_WAIT_S = 15.0


def _open(duckdb: Any, path: Path, read_only: bool) -> Any:
    deadline = time.monotonic() + (0.0 if read_only else _WRITER_WAIT_S)
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise WarehouseError(f"cannot open warehouse {path}: {exc}") from exc
            if time.monotonic() + delay > deadline:
                raise WarehouseBusy(path) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
