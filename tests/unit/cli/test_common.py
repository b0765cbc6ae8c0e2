"""Shared CLI helpers: progress bars that end complete, listeners that fail in one line."""

from __future__ import annotations

import socket

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from shopsentry.cli.common import bind_listener, port_is_free, step_progress
from shopsentry.errors import ConfigError


def test_every_bar_ends_complete_even_of_unknown_size() -> None:
    console = Console(record=True, width=100, force_terminal=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with step_progress(columns, console=console) as progress:
        progress("dbt build", 65, None)  # a step of unknown size
        progress("training", 105, 400)  # left unfinished by the job
        progress("evaluating", 0, None)  # started, never advanced
    text = console.export_text()
    assert "65/65" in text and "400/400" in text and "1/1" in text, text
    assert "/?" not in text


def test_a_taken_port_is_one_config_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port} for the API"):
            bind_listener("127.0.0.1", port, what="the API")
    listener = bind_listener("127.0.0.1", 0, what="the API")
    listener.close()
