"""Fixtures for the API tests: the real embedded log in a tmp data dir, an app with
its background store consumer, and keys of every role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shopsentry.config import Settings
from tests.unit.api.factories import Keys, make_keys


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_fsync="never")


@pytest.fixture
def log(api_settings: Settings) -> Iterator[Any]:
    from shopsentry.bus import BusConfig, open_log

    opened = open_log(BusConfig.from_settings(api_settings))
    yield opened
    opened.close()


@pytest.fixture
def keys(api_settings: Settings) -> Keys:
    return make_keys(api_settings)


@pytest.fixture
def client(api_settings: Settings, log: Any, keys: Keys) -> Iterator[TestClient]:
    from shopsentry.api import create_app

    app = create_app(api_settings, log=log)
    with TestClient(app) as test_client:
        yield test_client
