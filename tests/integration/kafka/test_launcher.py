"""The test launcher ties every broker to the Python process that started it
(``setpriv --pdeathsig KILL``), from whichever thread it is started.

The kernel delivers the death signal when the *thread* that forked exits, so a broker
started from a short-lived thread used to be killed the moment that thread ended. These
tests use a small echo child instead of a JVM: the mechanism is the same, and seconds
instead of a broker start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import require
from tests.integration.fixtures.kafka import load_launcher, wait_until

pytestmark = [pytest.mark.integration]

ECHO = [sys.executable, "-c", "import sys\nfor line in sys.stdin: print(line.strip(), flush=True)"]


def _require_setpriv() -> None:
    require(
        shutil.which("setpriv") is not None and sys.platform.startswith("linux"),
        "setpriv (util-linux)",
        "apt-get install util-linux",
    )


def _start_in_thread(start: object) -> subprocess.Popen[str]:
    """Run ``start()`` in a thread that ends, and wait until the OS thread is gone
    (its /proc task entry is removed after the kernel sent any death signal)."""
    box: dict[str, object] = {}

    def run() -> None:
        box["native_id"] = threading.get_native_id()
        box["process"] = start()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    task = Path(f"/proc/self/task/{box['native_id']}")
    wait_until(lambda: not task.exists(), 30, "the starting thread to exit")
    return box["process"]  # type: ignore[return-value]


def _echo_kwargs() -> dict[str, object]:
    return {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}


def _echoes(process: subprocess.Popen[str], text: str) -> bool:
    """One round trip: the child runs (past setpriv's prctl and exec) and answers."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(text + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip() == text


def _started(start: object) -> object:
    """``start()``, returning once the child answered: setpriv sets the death signal
    just before its exec, so a thread that ended sooner would race it."""

    def run() -> subprocess.Popen[str]:
        process: subprocess.Popen[str] = start()  # type: ignore[operator]
        assert _echoes(process, "started")
        return process

    return run


def test_a_child_forked_by_an_ended_thread_gets_the_death_signal() -> None:
    """The kernel behaviour the launcher works around (so the next test can fail)."""
    _require_setpriv()
    launcher = load_launcher()
    process = _start_in_thread(
        _started(lambda: subprocess.Popen(launcher._die_with_parent(ECHO), **_echo_kwargs()))
    )
    try:
        assert process.wait(timeout=60) == -9
    finally:
        process.kill()
        process.wait()


def test_a_tied_child_started_from_a_thread_outlives_the_thread() -> None:
    _require_setpriv()
    launcher = load_launcher()
    process = _start_in_thread(_started(lambda: launcher.spawn(ECHO, **_echo_kwargs())))
    try:
        assert _echoes(process, "still here")
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_a_tied_child_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    _require_setpriv()
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, threading\n"
        f"sys.path.insert(0, {str(Path(load_launcher().__file__).parent)!r})\n"
        "import cluster as m\n"
        "box = {}\n"
        "t = threading.Thread(target=lambda: box.update(p=m.spawn(['sleep', '600'])))\n"
        "t.start(); t.join()\n"
        "print(box['p'].pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:  # setpriv sets the death signal just before it execs sleep
        wait_until(lambda: _command(child) == "sleep", 60, f"child {child} to exec sleep")
    except BaseException:
        os.kill(child, signal.SIGKILL)
        raise
    parent.kill()
    parent.wait()
    wait_until(lambda: not _alive(child), 60, f"child {child} to die with its parent")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
