"""Helpers every command shares: settings from the global options, parsing of rates
and durations, and one-line errors."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from shopsentry.config import Settings, load_settings
from shopsentry.errors import ConfigError


class State:
    """What the global options set; settings are built on first use."""

    def __init__(self, config: Path | None, overrides: dict[str, Any]) -> None:
        self.config = config
        self.overrides = overrides
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config, **self.overrides)
        return self._settings


def settings_of(ctx: typer.Context) -> Settings:
    state = ctx.find_root().obj
    if not isinstance(state, State):  # called without the root callback (tests)
        state = State(None, {})
        ctx.find_root().obj = state
    return state.settings()


def bind_listener(host: str, port: int, *, what: str) -> socket.socket:
    """A listening TCP socket on host:port, or one clear line if the port is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve {host!r} for {what}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} for {what}: {exc.strerror}",
            hint="stop whatever holds the port or pass another --port",
        ) from None
    sock.set_inheritable(True)
    return sock


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP server could listen on host:port now."""
    try:
        bind_listener(host, port, what="a check").close()
    except ConfigError:
        return False
    return True


_RATE = re.compile(
    r"^\s*([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|m|min|h|hour|d|day))?\s*$", re.IGNORECASE
)
_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_rate(text: str) -> float:
    """'3000/h' → events per second (0.833...). A bare number is per hour, as in the design."""
    match = _RATE.match(text)
    if not match:
        raise ConfigError(f"bad rate {text!r}", hint="write it like 1000/h, 50/s or 3000")
    value = float(match.group(1))
    unit = (match.group(2) or "h").lower()
    return value / _UNIT_SECONDS[unit]


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h|d)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """'1h' / '30m' / '45s' / '2d' → seconds. A bare number is seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"bad duration {text!r}", hint="write it like 45s, 30m, 1h or 2d")
    value = float(match.group(1))
    unit = (match.group(2) or "s").lower()
    return value * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[unit]


StepProgress = Callable[[str, int, int | None], None]


@contextmanager
def step_progress(
    columns: tuple[Any, ...], *, console: Any = None, transient: bool = False
) -> Iterator[StepProgress]:
    """A rich progress display driven by the jobs' ``(step, done, total)`` callback.

    A new step means the earlier ones are done, and leaving the block completes every
    bar, so none is left as ``102/?`` or a spinning ``0/?``; a step of unknown size
    ends with its count as its total.
    """
    from rich.progress import Progress

    with Progress(*columns, console=console, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def finish() -> None:
            for task in bar.tasks:
                if not task.finished:
                    total = task.total if task.total else max(task.completed, 1)
                    bar.update(task.id, total=total, completed=total)

        def update(step: str, done: int, total: int | None) -> None:
            if step not in tasks:
                finish()
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        try:
            yield update
        finally:
            finish()
