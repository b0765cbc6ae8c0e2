"""`shopsentry detect` is registered and documents its options."""

from __future__ import annotations

from typer.testing import CliRunner

from shopsentry.cli import app


def test_detect_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["detect", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--workers", "--metrics-port", "--max-events", "--exit-when-idle"):
        assert option in result.output


def test_detect_refuses_a_bad_worker_count() -> None:
    result = CliRunner().invoke(app, ["detect", "--workers", "0"])
    assert result.exit_code != 0
    assert "workers" in result.output.lower()
