"""Start a throwaway ``redis-server`` on a free loopback port and wait until it answers.

Shared by the integration tests (``tests/integration/fixtures/redis.py``) and the
benchmarks (``benchmarks/detector_workload.py``), which import it by path (``scripts/``
is not a package), as they do ``scripts/kafka/cluster.py``. No persistence by default;
``appendonly=True`` fsyncs every write to an append-only file (durability tests).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """redis-server is not installed, or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(workdir: Path, *, appendonly: bool = False) -> RedisServer:
    """redis-server on a free port with ``workdir`` as its directory, answering PING;
    :class:`RedisUnavailable` if it is not installed or does not start in 15 s."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(
            "redis-server not found: install it with `make system-deps`"
            " (Debian package redis-server)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    args += (
        ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
    )
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, port, workdir)
    import redis

    deadline = time.monotonic() + 15
    while True:
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.5).ping():
                return server
        except redis.RedisError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RedisUnavailable(
                f"redis-server on port {port} did not start (exit code {process.returncode})"
            )
        time.sleep(0.05)
