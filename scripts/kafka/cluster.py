"""Start and stop real Apache Kafka (KRaft) nodes on 127.0.0.1 for tests and by hand.

The jars come from Maven Central through ``scripts/kafka/fetch.sh``, which caches their
classpath in ``scripts/kafka/.classpath``. Two shapes are supported:

* ``KafkaCluster(dir, brokers=1)``: one combined broker+controller node with a PLAINTEXT
  listener and, when ``sasl_users`` is given, an extra SASL_PLAINTEXT listener that
  requires SCRAM-SHA-512 (users are added at format time with ``--add-scram``).
* ``KafkaCluster(dir, brokers=3)``: one dedicated controller and three brokers. A
  separate controller keeps the metadata quorum alive when brokers are killed, so the
  fault tests see what a producer sees when in-sync replicas go away (ISR shrinks,
  NOT_ENOUGH_REPLICAS), not a frozen cluster that lost its quorum.

Every node gets free ports, its own data dir under ``dir`` and a small heap; nodes are
stopped by pid. CLI form (prints the bootstrap address, leaves the nodes running)::

    .venv/bin/python scripts/kafka/cluster.py start --dir /tmp/kafka-dev --brokers 1
    .venv/bin/python scripts/kafka/cluster.py stop --dir /tmp/kafka-dev
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOG4J_CONFIG = HERE / "log4j2.properties"
STATE_FILE = "cluster.json"
SCRAM_MECHANISM = "SCRAM-SHA-512"


class KafkaNotAvailable(RuntimeError):
    """Java or the Kafka jars are missing: the caller decides whether to skip or fail."""


class KafkaStartError(RuntimeError):
    """A node did not come up; the message carries the tail of its log."""


def classpath_file() -> Path:
    return Path(os.environ.get("SHOPSENTRY_KAFKA_CLASSPATH", HERE / ".classpath"))


def find_classpath() -> str:
    """The broker classpath written by fetch.sh, checked jar by jar."""
    if shutil.which("java") is None:
        raise KafkaNotAvailable("java is not on PATH")
    path = classpath_file()
    if not path.is_file():
        raise KafkaNotAvailable(f"{path} is missing")
    jars = [j for j in path.read_text().strip().split(os.pathsep) if j]
    missing = [j for j in jars if not Path(j).is_file()]
    if not jars or missing:
        raise KafkaNotAvailable(f"{len(missing)} jar(s) named in {path} are gone")
    return os.pathsep.join(jars)


def available() -> tuple[bool, str]:
    """Whether nodes can be started here, and why not."""
    try:
        find_classpath()
    except KafkaNotAvailable as exc:
        return False, str(exc)
    return True, ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as
    ``kafka-storage random-uuid`` prints), never starting with '-'."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def _die_with_parent(command: list[str]) -> list[str]:
    """Prefix ``command`` so the JVM gets SIGKILL when the Python process that started it
    dies (a crashed or killed test session leaves no broker behind). util-linux's
    ``setpriv --pdeathsig`` does it without running Python code between fork and exec.

    The kernel ties the death signal to the *thread* that forked, not to the process:
    a child started from a thread that then ends is killed at once. So tied children
    are started by :func:`spawn`, always from one long-lived launcher thread."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]


class _Launcher:
    """One daemon thread that forks every tied child and lives as long as the process:
    the death signal then fires when the process exits, never when the caller's
    thread does (a test helper thread, a pytest-timeout thread, a thread pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, job: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="kafka-launcher", daemon=True
                )
                self._thread.start()
        done: Future[Any] = Future()
        self._jobs.put((job, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)


_LAUNCHER = _Launcher()


def spawn(
    command: list[str], *, tie_to_parent: bool = True, **popen: Any
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(command, **popen)``; with ``tie_to_parent`` the child is killed
    when this process dies, from whichever thread this is called."""
    if not tie_to_parent:
        return subprocess.Popen(command, **popen)
    tied = _die_with_parent(command)
    process: subprocess.Popen[bytes] = _LAUNCHER.run(lambda: subprocess.Popen(tied, **popen))
    return process


@dataclass
class Node:
    """One KRaft node: its id, roles, ports and process."""

    node_id: int
    roles: str  # "broker,controller" | "broker" | "controller"
    dir: Path
    controller_port: int | None = None
    plaintext_port: int | None = None
    sasl_port: int | None = None
    heap_mb: int = 384
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def config_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


class KafkaCluster:
    """A set of KRaft nodes on loopback; see the module docstring for the shapes."""

    def __init__(
        self,
        base_dir: Path,
        brokers: int = 1,
        *,
        sasl_users: dict[str, str] | None = None,
        heap_mb: int | None = None,
        tie_to_parent: bool = True,
    ) -> None:
        if brokers < 1:
            raise ValueError("brokers must be >= 1")
        self.base_dir = Path(base_dir)
        self.brokers_count = brokers
        self.sasl_users = dict(sasl_users or {})
        self.tie_to_parent = tie_to_parent
        self.cluster_id = random_cluster_id()
        self.nodes: list[Node] = []
        if brokers == 1:
            self.nodes.append(
                Node(
                    node_id=1,
                    roles="broker,controller",
                    dir=self.base_dir / "node-1",
                    controller_port=free_port(),
                    plaintext_port=free_port(),
                    sasl_port=free_port() if self.sasl_users else None,
                    heap_mb=heap_mb or 512,
                )
            )
        else:
            self.nodes.append(
                Node(
                    node_id=100,
                    roles="controller",
                    dir=self.base_dir / "controller-100",
                    controller_port=free_port(),
                    heap_mb=192,
                )
            )
            for i in range(brokers):
                self.nodes.append(
                    Node(
                        node_id=i + 1,
                        roles="broker",
                        dir=self.base_dir / f"broker-{i + 1}",
                        plaintext_port=free_port(),
                        sasl_port=free_port() if self.sasl_users else None,
                        heap_mb=heap_mb or 320,
                    )
                )

    # -- addresses -------------------------------------------------------------------
    @property
    def broker_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.is_broker]

    @property
    def bootstrap(self) -> str:
        """PLAINTEXT bootstrap list of every broker."""
        return ",".join(f"127.0.0.1:{n.plaintext_port}" for n in self.broker_nodes)

    @property
    def sasl_bootstrap(self) -> str | None:
        if not self.sasl_users:
            return None
        return ",".join(f"127.0.0.1:{n.sasl_port}" for n in self.broker_nodes)

    @property
    def broker_ids(self) -> list[int]:
        return [n.node_id for n in self.broker_nodes]

    def _voters(self) -> str:
        return ",".join(
            f"{n.node_id}@127.0.0.1:{n.controller_port}"
            for n in self.nodes
            if "controller" in n.roles
        )

    # -- configuration ------------------------------------------------------------------
    def _properties(self, node: Node) -> dict[str, str]:
        replication = str(min(3, self.brokers_count))
        listeners: list[str] = []
        advertised: list[str] = []
        protocol_map = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        if "controller" in node.roles:
            listeners.append(f"CONTROLLER://127.0.0.1:{node.controller_port}")
        if node.is_broker:
            listeners.append(f"PLAINTEXT://127.0.0.1:{node.plaintext_port}")
            advertised.append(f"PLAINTEXT://127.0.0.1:{node.plaintext_port}")
            if node.sasl_port is not None:
                listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}")
                advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}")
                protocol_map.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
        props = {
            "process.roles": node.roles,
            "node.id": str(node.node_id),
            "controller.quorum.voters": self._voters(),
            "controller.listener.names": "CONTROLLER",
            "listeners": ",".join(listeners),
            "listener.security.protocol.map": ",".join(protocol_map),
            "log.dirs": str(node.data_dir),
            # Small, quick test nodes: few threads, few internal partitions, no waiting.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.replica.fetchers": "1",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(4 * 1024 * 1024),
            "offsets.topic.num.partitions": "3",
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.num.partitions": "3",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            # Notice a dead broker within seconds rather than the defaults' 9-30 s.
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            "replica.lag.time.max.ms": "10000",
            "controlled.shutdown.enable": "true",
            "log.retention.check.interval.ms": "30000",
        }
        if node.is_broker:
            props["advertised.listeners"] = ",".join(advertised)
            props["inter.broker.listener.name"] = "PLAINTEXT"
        if node.sasl_port is not None:
            props["sasl.enabled.mechanisms"] = SCRAM_MECHANISM
            props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        return props

    def _write_config(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self._properties(node).items())
        node.config_path.write_text(body)

    def _java(self, classpath: str, heap_mb: int, main: str, *args: str, quick: bool) -> list[str]:
        opts = [
            "java",
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 128)}m",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            "-Xss512k",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        ]
        if quick:  # short-lived tools: the C1 compiler alone starts faster
            opts.append("-XX:TieredStopAtLevel=1")
        return [*opts, "-cp", classpath, main, *args]

    # -- lifecycle ---------------------------------------------------------------------
    def format(self) -> None:
        """Write configs and format every node's storage (in parallel: each is a JVM)."""
        classpath = find_classpath()
        procs: list[tuple[Node, subprocess.Popen[bytes], Path]] = []
        for node in self.nodes:
            self._write_config(node)
            args = [
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(node.config_path),
                "--ignore-formatted",
            ]
            for user, password in self.sasl_users.items():
                args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
            out = node.dir / "format.log"
            with out.open("wb") as fh:
                proc = subprocess.Popen(
                    self._java(classpath, 128, "kafka.tools.StorageTool", *args, quick=True),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            procs.append((node, proc, out))
        for node, proc, out in procs:
            if proc.wait(timeout=180) != 0:
                output = out.read_text(errors="replace")[-2000:]
                raise KafkaStartError(f"formatting node {node.node_id} failed:\n{output}")

    def start(self, timeout: float = 180.0) -> float:
        """Format (first time only) and start every node; wait until all brokers are
        registered. Returns the seconds it took."""
        began = time.monotonic()
        if not all(n.config_path.exists() for n in self.nodes):
            self.format()
        for node in self.nodes:
            self._launch(node)
        self.wait_ready(self.broker_ids, timeout=timeout - (time.monotonic() - began))
        self.save_state()
        return time.monotonic() - began

    def _launch(self, node: Node) -> None:
        if node.alive():
            return
        classpath = find_classpath()
        log = node.log_path.open("ab")
        command = self._java(
            classpath, node.heap_mb, "kafka.Kafka", str(node.config_path), quick=False
        )
        node.process = spawn(
            command,
            tie_to_parent=self.tie_to_parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        node.pid = node.process.pid

    def wait_ready(self, broker_ids: list[int], timeout: float = 120.0) -> None:
        """Block until the metadata lists every broker in ``broker_ids`` (unfenced)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + max(timeout, 1.0)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        seen: set[int] = set()
        while time.monotonic() < deadline:
            for node in self.nodes:
                watched = node.node_id in broker_ids or not node.is_broker
                if watched and node.process is not None and not node.alive():
                    raise KafkaStartError(
                        f"Kafka node {node.node_id} exited with {node.process.returncode}:\n"
                        f"{node.log_tail()}"
                    )
            try:
                metadata = admin.list_topics(timeout=2.0)
                seen = set(metadata.brokers)
                if set(broker_ids) <= seen:
                    return
            except Exception:
                pass
            time.sleep(0.3)
        tails = "\n".join(f"--- node {n.node_id} ---\n{n.log_tail(10)}" for n in self.nodes)
        raise KafkaStartError(
            f"brokers {sorted(set(broker_ids) - seen)} not ready after {timeout:.0f}s:\n{tails}"
        )

    def broker(self, i: int) -> Node:
        """The i-th broker (0-based; its node id is ``i + 1``)."""
        return self.broker_nodes[i]

    def kill(self, i: int) -> None:
        """SIGKILL the i-th broker: a crash, no controlled shutdown."""
        node = self.broker(i)
        self._signal(node, signal.SIGKILL)
        self._reap(node, 30)

    def stop(self, i: int, timeout: float = 30.0) -> None:
        """Stop the i-th broker gracefully (SIGTERM, then SIGKILL after ``timeout``)."""
        self._stop_node(self.broker(i), timeout)

    def start_broker(self, i: int, timeout: float = 120.0) -> float:
        """Restart the i-th broker on its old data dir and wait until it is registered."""
        began = time.monotonic()
        self._launch(self.broker(i))
        self.wait_ready([self.broker(i).node_id], timeout=timeout)
        return time.monotonic() - began

    def stop_all(self, graceful: bool = False) -> None:
        """Stop brokers first, then controllers (a broker's controlled shutdown needs one)."""
        order = sorted(self.nodes, key=lambda n: not n.is_broker)
        for node in order:
            if graceful:
                self._stop_node(node, 20.0)
            else:
                self._signal(node, signal.SIGKILL)
        for node in order:
            self._reap(node, 30)

    @staticmethod
    def _stop_node(node: Node, timeout: float) -> None:
        KafkaCluster._signal(node, signal.SIGTERM)
        if not KafkaCluster._reap(node, timeout):
            KafkaCluster._signal(node, signal.SIGKILL)
            KafkaCluster._reap(node, 30)

    @staticmethod
    def _signal(node: Node, sig: signal.Signals) -> None:
        if node.pid is not None and node.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, sig)

    @staticmethod
    def _reap(node: Node, timeout: float) -> bool:
        """Wait for the node's process to exit; True if it did."""
        if node.process is not None:
            try:
                node.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while node.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        return not node.alive()

    # -- CLI state -----------------------------------------------------------------------
    def save_state(self) -> None:
        state = {
            "bootstrap": self.bootstrap,
            "sasl_bootstrap": self.sasl_bootstrap,
            "nodes": [{"node_id": n.node_id, "pid": n.pid, "dir": str(n.dir)} for n in self.nodes],
        }
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=2))


def stop_from_state(base_dir: Path) -> int:
    """Stop the nodes a ``start`` CLI call left running; returns how many were signalled."""
    state = json.loads((base_dir / STATE_FILE).read_text())
    nodes = [
        Node(node_id=n["node_id"], roles="", dir=Path(n["dir"]), pid=n["pid"])
        for n in state["nodes"]
    ]
    # Brokers (ids < 100) first so they can shut down while the controller is still up.
    nodes.sort(key=lambda n: n.node_id >= 100)
    stopped = 0
    for node in nodes:
        if node.alive():
            KafkaCluster._stop_node(node, 30.0)
            stopped += 1
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="format and start nodes, print the bootstrap address")
    start.add_argument(
        "--dir", type=Path, required=True, help="directory for configs, data and logs"
    )
    start.add_argument(
        "--brokers", type=int, default=1, choices=(1, 3), help="1 combined node or 3 brokers"
    )
    start.add_argument(
        "--scram-user",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="add a SCRAM-SHA-512 user and a SASL_PLAINTEXT listener",
    )
    stop = sub.add_parser("stop", help="stop the nodes started with `start --dir DIR`")
    stop.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "stop":
        print(f"stopped {stop_from_state(args.dir)} node(s)")
        return 0
    users = dict(u.split(":", 1) for u in args.scram_user)
    cluster = KafkaCluster(args.dir, brokers=args.brokers, sasl_users=users, tie_to_parent=False)
    try:
        took = cluster.start()
    except (KafkaNotAvailable, KafkaStartError) as exc:
        cluster.stop_all()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"started in {took:.1f}s")
    print(f"bootstrap: {cluster.bootstrap}")
    if cluster.sasl_bootstrap:
        print(f"sasl bootstrap ({SCRAM_MECHANISM}): {cluster.sasl_bootstrap}")
    print(f"stop with: {sys.executable} {Path(__file__)} stop --dir {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
