"""The detector worker's /metrics endpoint binds the host it is given."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from shopsentry.detection.metrics import WorkerMetrics
from shopsentry.errors import ConfigError


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            return b"shopsentry_consumer_lag" in r.read()
    except OSError:
        return False


def test_serve_binds_the_given_host_only() -> None:
    port = _free_port("127.0.0.2")
    WorkerMetrics().serve(port, "127.0.0.2")
    assert _answers("127.0.0.2", port)
    assert not _answers("127.0.0.1", port)  # not loopback's usual address: the given one


def test_serve_on_a_taken_port_is_a_config_error_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            WorkerMetrics().serve(port)
