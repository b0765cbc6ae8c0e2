"""`shopsentry demo`: the whole system on embedded defaults, on one machine.

It runs each part as the operator would, as its own process through its own command,
so the demo exercises the same entry points a deployment uses:

1. a short simulated history → the warehouse → a first champion model (if none yet);
2. `serve --demo` (API + dashboard), `detect --workers 2`, `notify`, and
   `simulate --speed N` (live traffic on an accelerated clock);
3. `batch run hourly_etl` every few minutes of wall time, `daily_fraud_report` at the end;
4. a summary (events, alerts, fraud caught, latency p95) on exit; Ctrl-C stops cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from shopsentry.cli.common import parse_duration, settings_of
from shopsentry.config import Settings

DETECTOR_METRICS_PORT = 9400


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        ctx: typer.Context,
        duration: Annotated[
            str | None,
            typer.Option(help="Stop after this long (e.g. 2m); default: run until Ctrl-C."),
        ] = None,
        speed: Annotated[
            float, typer.Option(help="Simulated seconds per real second for live traffic.")
        ] = 60.0,
        users: Annotated[int, typer.Option(help="Users in the simulated population.")] = 2000,
        history_days: Annotated[
            int, typer.Option(help="Days of history to train the first model on.")
        ] = 21,
        port: Annotated[int, typer.Option(help="Port of the API and dashboard.")] = 8000,
        etl_every: Annotated[
            str, typer.Option(help="Run hourly_etl this often (wall time).")
        ] = "60s",
        seed: Annotated[int, typer.Option(help="Random seed of the simulator.")] = 7,
    ) -> None:
        """Run the whole system on embedded defaults until Ctrl-C or --duration.

        Simulator, 2 detector workers, notifier, batch jobs, training and the dashboard.
        """
        settings = settings_of(ctx)
        runner = DemoRunner(settings, port=port, speed=speed, users=users, seed=seed)
        stop_after = parse_duration(duration) if duration else None
        runner.run(
            history_days=history_days, stop_after=stop_after, etl_every=parse_duration(etl_every)
        )


class DemoRunner:
    """Starts the parts as child processes and stops them in reverse order."""

    def __init__(
        self, settings: Settings, *, port: int, speed: float, users: int, seed: int
    ) -> None:
        self.settings = settings
        self.port = port
        self.speed = speed
        self.users = users
        self.seed = seed
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.data_dir = settings.data_dir.resolve()
        self.env = {
            **os.environ,
            "SHOPSENTRY_DATA_DIR": str(self.data_dir),
            "SHOPSENTRY_BUS": settings.bus,
        }
        self.logs = self.data_dir / "demo-logs"
        self.workers = settings.detector.workers
        self.started_at = datetime.now(UTC)

    # -- steps -------------------------------------------------------------
    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "shopsentry", *args]

    def _run_step(self, title: str, *args: str) -> None:
        typer.secho(f"▶ {title}", fg=typer.colors.CYAN)
        result = subprocess.run(self._cli(*args), env=self.env, check=False)
        if result.returncode != 0:
            raise typer.Exit(result.returncode)

    def _start(self, name: str, *args: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            self._cli(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.children.append((name, proc))
        typer.echo(f"  started {name} (pid {proc.pid}, log {self.logs / (name + '.log')})")

    def _has_champion(self) -> bool:
        from shopsentry.models import champion_version

        return champion_version(self.settings) is not None

    def bootstrap(self, history_days: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._has_champion():
            typer.echo("a champion model exists: skipping the training bootstrap")
            return
        history = self.data_dir / "history"
        self._run_step(
            f"simulating {history_days} days of {self.users} users for the first model",
            "simulate",
            "--users",
            str(self.users),
            "--days",
            str(history_days),
            "--seed",
            str(self.seed),
            "--out",
            str(history),
            "--format",
            "parquet",
        )
        self._run_step(
            "loading the history into the warehouse (hourly_etl backfill)",
            "batch",
            "run",
            "hourly_etl",
            "--history",
            str(history),
        )
        self._run_step("training the first champion", "batch", "run", "weekly_model_retrain")

    def run(self, *, history_days: int, stop_after: float | None, etl_every: float) -> None:
        stopping = False

        def _stop(_signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        started = time.monotonic()
        try:
            self.bootstrap(history_days)
            typer.secho("▶ starting the services", fg=typer.colors.CYAN)
            self._start("serve", "serve", "--demo", "--port", str(self.port))
            self._start(
                "detect",
                "detect",
                "--workers",
                str(self.workers),
                "--metrics-port",
                str(DETECTOR_METRICS_PORT),
            )
            self._start("notify", "notify", "--demo")
            self._start(
                "simulate",
                "simulate",
                "--users",
                str(self.users),
                "--speed",
                str(self.speed),
                "--seed",
                str(self.seed + 1),
                "--duration",
                "30d",
            )
            typer.secho(
                f"\n  dashboard: http://127.0.0.1:{self.port}/  (Ctrl-C stops the demo)\n",
                fg=typer.colors.GREEN,
                bold=True,
            )
            next_etl = time.monotonic() + etl_every
            while not stopping:
                time.sleep(0.5)
                if stop_after is not None and time.monotonic() - started >= stop_after:
                    break
                for name, proc in self.children:
                    if proc.poll() is not None and name != "simulate":
                        typer.secho(
                            f"{name} exited with {proc.returncode}; "
                            f"see {self.logs / (name + '.log')}",
                            fg=typer.colors.RED,
                        )
                        stopping = True
                if time.monotonic() >= next_etl:
                    subprocess.run(
                        self._cli("batch", "run", "hourly_etl"),
                        env=self.env,
                        check=False,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    next_etl = time.monotonic() + etl_every
            detector_stats = self.scrape_detectors()
        finally:
            self.shutdown()
        self._run_step("hourly_etl (final load)", "batch", "run", "hourly_etl")
        self._run_step("daily_fraud_report", "batch", "run", "daily_fraud_report")
        self.summary(detector_stats)

    def shutdown(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                typer.echo(f"  {name} did not stop in time: killing it")
                proc.kill()
        self.children.clear()

    def _worker_urls(self) -> list[str]:
        return [
            f"http://127.0.0.1:{DETECTOR_METRICS_PORT + i}/metrics" for i in range(self.workers)
        ]

    def scrape_detectors(self) -> dict[str, str]:
        """What the running workers measured: throughput, bands, alerts, latency p95."""
        from shopsentry.monitoring.metrics_reader import scrape_all

        scrapes, _failed = scrape_all(self._worker_urls(), timeout=2.0)
        if not scrapes:
            return {}
        bands: dict[str, float] = {}
        buckets: dict[float, float] = {}
        processed = alerts = dead = 0.0
        for sc in scrapes:
            processed += sc.total("events_processed_total")
            alerts += sc.total("alerts_total")
            dead += sc.total("dead_letter_total")
            for band, n in sc.by_label("decisions_total", "band").items():
                bands[band] = bands.get(band, 0.0) + n
            for le, n in sc.by_label("end_to_end_latency_seconds_bucket", "le").items():
                bound = float(le)
                buckets[bound] = buckets.get(bound, 0.0) + n
        stats = {
            "events processed": f"{processed:,.0f}",
            "decisions by band": ", ".join(f"{b} {n:,.0f}" for b, n in sorted(bands.items())),
            "fraud alerts": f"{alerts:,.0f}",
            "dead-lettered events": f"{dead:,.0f}",
        }
        p95 = histogram_quantile(0.95, buckets)
        if p95 is not None:
            stats["end-to-end latency p95"] = (
                f"{p95 * 1000:.0f} ms (target {self.settings.slo.end_to_end_ms:.0f} ms)"
            )
        return stats

    def fraud_caught(self) -> dict[str, str]:
        """Per the simulator's ground truth: how much of the live fraud the detector flagged."""
        from shopsentry.errors import ShopsentryError
        from shopsentry.warehouse.queries import run_query

        try:
            rows = run_query(
                self.settings,
                """select count(*) as fraud,
                          count(*) filter (where d.band <> 'approve') as caught
                   from staging.stg_decisions d
                   join staging.stg_fraud_labels l using (event_id)
                   where l.is_fraud and d.decided_at >= ?""",
                [self.started_at],
            )
        except ShopsentryError as exc:
            return {"fraud caught": f"unknown ({exc.one_line()})"}
        fraud, caught = int(rows[0]["fraud"] or 0), int(rows[0]["caught"] or 0)
        share = f" ({caught / fraud:.0%})" if fraud else ""
        return {"fraud caught (simulator truth)": f"{caught} of {fraud}{share}"}

    def summary(self, detector_stats: dict[str, str]) -> None:
        typer.secho("\nsummary", bold=True)
        for key, value in {**detector_stats, **self.fraud_caught()}.items():
            typer.echo(f"  {key:<32} {value}")
        typer.echo(f"  reports in {self.settings.reports_dir}")
        typer.echo(f"  notifier mailbox in {self.data_dir / 'mailbox'}")


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts {upper bound: count}."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
        lower, below = bound, count
    return lower
