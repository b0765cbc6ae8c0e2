"""A local SMTP mailbox for the demo: a real SMTP server (aiosmtpd) on 127.0.0.1 that
files every message it accepts as an ``.eml`` file in a directory.

`shopsentry notify --demo` starts one and points the email channel at it, so the whole
delivery path (routing, SMTP, ledger, offsets) runs on one machine with nothing to
configure, and the delivered alerts can be opened with any mail reader.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class _Handler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        alert_id = _header(content, b"X-Shopsentry-Alert-Id") or "message"
        name = f"{time.time_ns()}-{_SAFE.sub('_', alert_id)[:80]}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, self.directory / name)  # readers never see half a message
        return "250 Message accepted for delivery"


def _header(content: bytes, name: bytes) -> str | None:
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name.lower():
            return value.strip().decode(errors="replace")
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalMailbox:
    """Start with :meth:`start`, stop with :meth:`stop`; ``port`` 0 picks a free one."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        self.host = host
        self.port = port or free_port(host)
        self._controller: Any = None

    def start(self) -> LocalMailbox:
        from aiosmtpd.controller import Controller

        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self.directory), hostname=self.host, port=self.port)
        self._controller.start()
        logger.info("local mailbox on %s:%d → %s", self.host, self.port, self.directory)
        return self

    def messages(self) -> list[Path]:
        """Delivered messages, oldest first."""
        return sorted(self.directory.glob("*.eml"))

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
