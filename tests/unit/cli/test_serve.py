"""`shopsentry apikeys ...` and `shopsentry serve` refusing demo keys outside demo mode."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from shopsentry.api.security import KeyStore
from shopsentry.cli import app
from shopsentry.errors import ConfigError

runner = CliRunner()


def test_apikeys_create_prints_the_token_once_and_list_never_shows_it(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = runner.invoke(
        app, ["--data-dir", data, "apikeys", "create", "--role", "ingest", "--source", "pos"]
    )
    assert created.exit_code == 0, created.output
    token = next(line for line in created.output.splitlines() if line.startswith("ssk_"))
    store = KeyStore(tmp_path / "data" / "api" / "keys.db")
    principal = store.authenticate(token)
    store.close()
    assert principal is not None and principal.source == "pos"

    listed = runner.invoke(app, ["--data-dir", data, "apikeys", "list"])
    assert listed.exit_code == 0
    assert token.split("_", 2)[2] not in listed.output

    bad = runner.invoke(
        app, ["--data-dir", data, "apikeys", "create", "--role", "analyst", "--source", "web"]
    )
    assert bad.exit_code != 0


def test_serve_refuses_demo_keys_outside_demo_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    KeyStore(data / "api" / "keys.db").ensure_demo_keys()
    result = runner.invoke(app, ["--data-dir", str(data), "serve", "--port", "1"])
    assert isinstance(result.exception, ConfigError)
    assert "demo API keys" in result.exception.message

    revoked = runner.invoke(app, ["--data-dir", str(data), "apikeys", "revoke", "--demo"])
    assert revoked.exit_code == 0
    assert "revoked 5 key(s)" in revoked.output
