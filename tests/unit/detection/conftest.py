from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shopsentry.events.codec import encode
from shopsentry.features.lmdb_store import LmdbStateStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStateStore]:
    s = LmdbStateStore(tmp_path / "state.lmdb")
    yield s
    s.close()


@pytest.fixture
def encoded() -> Callable[[Any], bytes]:
    return encode
