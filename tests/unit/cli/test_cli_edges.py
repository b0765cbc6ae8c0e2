"""The CLI's edges: one line and exit 1 for a user mistake, Typer's usage exit 2, no
`<bool>` beside flags, settings printed redacted, listeners that fail clearly."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopsentry.cli import app, main


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SHOPSENTRY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SHOPSENTRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the console entry point as a user would (its error handling included)."""
    import sys

    old = sys.argv
    sys.argv = ["shopsentry", *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), captured.out + captured.err


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"[api\n", "not valid TOML"), (b'x = "\xff"\n', "not UTF-8")],
)
@pytest.mark.parametrize("via_env", [False, True])
def test_a_bad_config_file_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    needle: str,
    via_env: bool,
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    if via_env:
        monkeypatch.setenv("SHOPSENTRY_CONFIG", str(path))
        code, out = run_main(["config", "show"], capsys)
    else:
        code, out = run_main(["--config", str(path), "config", "show"], capsys)
    assert code == 1
    assert needle in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_config_show_redacts_text_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SHOPSENTRY_NOTIFIER__WEBHOOK_URLS", '["http://user:pass@host/hook?token=s3cret"]'
    )
    runner = CliRunner()
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "user:pass" not in result.output and "s3cret" not in result.output
        assert "http://***@host/hook?token=***" in result.output
    data = json.loads(runner.invoke(app, ["config", "show", "--json"]).output)
    assert data["notifier"]["webhook_urls"] == ["http://***@host/hook?token=***"]


def test_help_shows_no_bool_metavar() -> None:
    runner = CliRunner()
    for args in ([], ["serve"], ["notify"], ["batch", "run"], ["simulate"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args


def test_serve_refuses_a_port_out_of_range() -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "80000"])
    assert result.exit_code == 2  # Typer's usage error, as the README says
    assert "--port" in result.output and "65535" in result.output


def test_serve_on_a_taken_port_fails_before_the_banner(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_main(["serve", "--port", str(taken_port)], capsys)
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}" in out
    assert "dashboard:" not in out


def test_serve_binds_the_api_section_of_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bound: list[tuple[str, int]] = []

    def fake_bind(host: str, port: int, *, what: str) -> socket.socket:
        bound.append((host, port))
        raise SystemExit(0)

    monkeypatch.setattr("shopsentry.cli.serve.bind_listener", fake_bind)
    path = tmp_path / "s.toml"
    path.write_text('[api]\nhost = "127.0.0.2"\nport = 8123\n')
    run_main(["--config", str(path), "serve"], capsys)
    run_main(["--config", str(path), "serve", "--port", "8124"], capsys)
    assert bound == [("127.0.0.2", 8123), ("127.0.0.2", 8124)]


def test_detect_on_a_taken_metrics_port_is_one_line(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_main(["detect", "--workers", "1", "--metrics-port", str(taken_port)], capsys)
    assert code == 1
    assert f"metrics port {taken_port} on 127.0.0.1 is taken" in out
    assert "Traceback" not in out


def test_detect_with_redis_unreachable_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SHOPSENTRY_STATE__BACKEND", "redis")
    monkeypatch.setenv("SHOPSENTRY_STATE__REDIS_URL", f"redis://127.0.0.1:{port}/0")
    code, out = run_main(["detect", "--workers", "1", "--metrics-port", "0"], capsys)
    assert code == 1
    assert "redis" in out.lower()
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_detect_against_an_unreachable_kafka_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("confluent_kafka")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SHOPSENTRY_KAFKA__CONNECT_TIMEOUT_S", "2")
    code, out = run_main(
        ["--bus", f"kafka://127.0.0.1:{port}", "detect", "--workers", "1", "--metrics-port", "0"],
        capsys,
    )
    assert code == 1
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_printed_broker_addresses_hide_credentials() -> None:
    from shopsentry.cli.topics import _where
    from shopsentry.config import Settings

    assert _where(Settings(bus="kafka://svc:hunter2@b1:9092")) == "kafka://***@b1:9092"
