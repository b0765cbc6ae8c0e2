"""Run the dbt project in ``warehouse/`` in-process through dbt's Python API.

One function, :func:`run_dbt`, wraps ``dbtRunner().invoke`` so every caller (the jobs,
the CLI, Airflow tasks, tests) runs dbt the same way: project and profiles from the repo's
``warehouse/`` directory, the DuckDB file and target from a :class:`DbtConfig` (passed to
``profiles.yml`` through ``SHOPSENTRY_WAREHOUSE_PATH`` / ``SHOPSENTRY_DBT_TARGET``), and
dbt's own target/log directories under the data dir so parallel test runs never share
artifacts. Failures become :class:`DbtFailed` (a model did not build) or
:class:`DataQualityFailed` (a test or freshness check failed), each naming the nodes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shopsentry.warehouse.db import DataQualityFailed, DbtFailed

if TYPE_CHECKING:
    from shopsentry.config import Settings

logger = logging.getLogger(__name__)

PROJECT_ENV = "SHOPSENTRY_DBT_PROJECT_DIR"
# dbt's runner keeps global state (flags, adapters); one invocation at a time per process.
_DBT_LOCK = threading.Lock()

# Called with (nodes finished so far, description of the node just finished).
NodeCallback = Callable[[int, str], None]


@dataclass(frozen=True, slots=True)
class DbtConfig:
    """What a dbt invocation needs: the warehouse file, dbt's target and a work directory
    for dbt's own target/ and logs/."""

    warehouse: Path
    target: Literal["duckdb", "snowflake"]
    work_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> DbtConfig:
        return cls(
            warehouse=settings.warehouse_path,
            target=settings.warehouse.dbt_target,
            work_dir=settings.data_dir / "dbt",
        )


def project_dir() -> Path:
    """The dbt project: ``$SHOPSENTRY_DBT_PROJECT_DIR``, else ``warehouse/`` of the checkout."""
    override = os.environ.get(PROJECT_ENV)
    if override:
        return Path(override).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "warehouse" / "dbt_project.yml"
        if candidate.is_file():
            return candidate.parent
    candidate = Path.cwd() / "warehouse"
    if (candidate / "dbt_project.yml").is_file():
        return candidate.resolve()
    raise DbtFailed(
        "cannot find the dbt project (warehouse/dbt_project.yml)",
        hint=f"run from the repository or set {PROJECT_ENV}",
    )


@dataclass(frozen=True, slots=True)
class NodeResult:
    unique_id: str
    resource_type: str
    status: str
    message: str
    seconds: float
    failures: int | None = None


@dataclass
class DbtRunResult:
    """What one dbt invocation did, node by node."""

    command: list[str]
    nodes: list[NodeResult] = field(default_factory=list)
    seconds: float = 0.0

    def by_status(self, *statuses: str) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in statuses]

    @property
    def models_built(self) -> int:
        return sum(1 for n in self.nodes if n.resource_type == "model" and n.status == "success")

    @property
    def tests_passed(self) -> int:
        return sum(
            1 for n in self.nodes if n.resource_type in {"test", "unit_test"} and n.status == "pass"
        )


@contextmanager
def _dbt_environment(config: DbtConfig) -> Iterator[None]:
    """Expose the config to profiles.yml for the duration of one invocation."""
    values = {
        "SHOPSENTRY_WAREHOUSE_PATH": str(config.warehouse.resolve()),
        "SHOPSENTRY_DBT_TARGET": config.target,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open between invocations.

    DuckDB has one writer per file and refuses a second connection with another
    configuration in the same process; the job's next step (a read-only query, the
    loader of the next run, another process) must find the file free.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter (Snowflake) holds no local file
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            try:
                env.close()
            except Exception as exc:  # a failed close must not hide the run's own outcome
                logger.debug("closing dbt's DuckDB environment failed: %s", exc)


def _describe(node: Any) -> str:
    return str(getattr(node, "unique_id", node))


def run_dbt(
    config: DbtConfig,
    command: Sequence[str],
    *,
    on_node: NodeCallback | None = None,
    fail_on_tests: bool = True,
) -> DbtRunResult:
    """Invoke ``dbt <command>`` against the warehouse; raise if anything failed.

    ``command`` is dbt's own arguments, e.g. ``["build", "--exclude", "tag:ml"]``.
    A failed or erroring test (or an erroring source freshness check) raises
    :class:`DataQualityFailed` when ``fail_on_tests`` is set; a model, seed or snapshot
    that failed to build, or dbt itself failing, raises :class:`DbtFailed`.
    """
    import time

    from dbt.cli.main import dbtRunner

    project = project_dir()
    work = config.work_dir.resolve()
    config.warehouse.parent.mkdir(parents=True, exist_ok=True)
    args = _dbt_args(command, project, work)
    started = time.perf_counter()
    with _DBT_LOCK, _dbt_environment(config):
        try:
            outcome = dbtRunner(callbacks=[_progress_callback(on_node)]).invoke(args)
        finally:
            _release_duckdb()
    result = DbtRunResult(command=list(command), seconds=time.perf_counter() - started)
    result.nodes.extend(_node_results(outcome.result))
    _raise_on_failure(outcome, result, command, work, fail_on_tests=fail_on_tests)
    logger.info(
        "dbt %s: %d models built, %d checks passed in %.1fs",
        " ".join(command),
        result.models_built,
        result.tests_passed,
        result.seconds,
    )
    return result


def _dbt_args(command: Sequence[str], project: Path, work: Path) -> list[str]:
    """dbt's arguments: the caller's command, then the project, profiles and this run's
    own target/log directories, quiet and without colours (the output is ours to show)."""
    return [
        *command,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
        "--quiet",
        "--no-use-colors",
    ]


def _progress_callback(on_node: NodeCallback | None) -> Callable[[Any], None]:
    """A dbt event callback that tells ``on_node`` of each node finished, counting them."""
    finished = 0

    def callback(event: Any) -> None:
        nonlocal finished
        if event.info.name == "NodeFinished" and on_node is not None:
            finished += 1
            node_info = event.data.node_info
            on_node(finished, f"{node_info.resource_type} {node_info.node_name}")

    return callback


def _node_results(raw: Any) -> list[NodeResult]:
    """dbt's per-node results (none when dbt could not start) in our own plain form."""
    return [
        NodeResult(
            unique_id=_describe(r.node),
            resource_type=str(getattr(r.node, "resource_type", "")),
            status=str(r.status),
            message=str(r.message or ""),
            seconds=float(r.execution_time or 0.0),
            failures=r.failures,
        )
        for r in getattr(raw, "results", None) or []
    ]


def _raise_on_failure(
    outcome: Any,
    result: DbtRunResult,
    command: Sequence[str],
    work: Path,
    *,
    fail_on_tests: bool,
) -> None:
    """The run's failure as our error, most fundamental first: dbt could not run, then a
    node that failed to build, then failed checks (only with ``fail_on_tests``), then any
    other unsuccessful run."""
    log_hint = f"see {work / 'logs' / 'dbt.log'}"
    if outcome.exception is not None:
        raise DbtFailed(
            f"dbt {' '.join(command)} could not run: {outcome.exception}",
            hint=log_hint,
        ) from outcome.exception
    broken = [n for n in result.nodes if n.status in {"error", "runtime error"}]
    broken_builds = [n for n in broken if n.resource_type not in {"test", "unit_test", "source"}]
    if broken_builds:
        raise DbtFailed(
            f"dbt {command[0]}: {len(broken_builds)} node(s) failed to build: "
            + "; ".join(
                f"{n.unique_id}: {n.message.splitlines()[0] if n.message else 'error'}"
                for n in broken_builds[:3]
            ),
            failures=[n.unique_id for n in broken_builds],
            hint=log_hint,
        )
    checks = [
        n
        for n in result.nodes
        if n.status in {"fail", "error", "runtime error"}
        and n.resource_type in {"test", "unit_test", "source"}
    ]
    if checks and fail_on_tests:
        raise DataQualityFailed([f"{n.unique_id} ({_short(n)})" for n in checks])
    if not outcome.success and not checks:
        raise DbtFailed(f"dbt {' '.join(command)} failed", hint=log_hint)


def _short(node: NodeResult) -> str:
    if node.failures:
        return f"{node.failures} failing row(s)"
    first = node.message.splitlines()[0] if node.message else node.status
    return first[:160]
