"""Consumer-group admin requests in a child process, so a librdkafka abort cannot kill us.

librdkafka (up to 2.16, the newest on PyPI) aborts the whole process
(``rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0' failed``) when a
coordinator-bound admin request — ListConsumerGroupOffsets, DescribeConsumerGroups — is
in flight to a broker whose connection drops: a broker killed, or every connection of a
process resumed after a long SIGSTOP timing out at once. Its error path frees the request's
"enqueue once" object that the coordinator state machine still uses (a use-after-free;
depending on what reuses the memory the process aborts or takes a SIGSEGV). The
leader-bound requests (ListOffsets, metadata, DescribeTopics) do not take that path.

:class:`GroupProbe` runs those two requests in one long-lived child process (started on
first use, reading requests on stdin and answering on stdout, one JSON line each). When
the child dies the call raises :class:`BrokerUnavailable` (retryable) and the next call
starts a new child; so does a retryable error the child reports (librdkafka can keep a
dead broker as the group's coordinator for good). The child exits when its stdin closes,
so it never outlives us.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import IO, Any

from confluent_kafka import ConsumerGroupTopicPartitions

from shopsentry.bus.kafka import KafkaLog
from shopsentry.config import KafkaSettings
from shopsentry.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    BusError,
    ConfigError,
    ShopsentryError,
)

logger = logging.getLogger(__name__)

# (topic, partition) -> committed offset (None: never committed) / owning member
Committed = dict[tuple[str, int], int | None]
Owners = dict[tuple[str, int], str]

_ERRORS: dict[str, type[ShopsentryError]] = {
    "AuthenticationFailed": AuthenticationFailed,
    "BrokerUnavailable": BrokerUnavailable,
    "ConfigError": ConfigError,
}
_START_TIMEOUT_S = 60.0  # a fresh interpreter importing confluent-kafka on a loaded machine


class _HelperDied(BrokerUnavailable):
    """The helper child died (a librdkafka abort) before answering."""


class GroupProbe:
    """Committed offsets and partition owners of a consumer group, read by a child process."""

    def __init__(self, bootstrap: str, settings: KafkaSettings, deadline_s: float) -> None:
        self._bootstrap = bootstrap
        self._settings = settings
        # The child retries a moving cluster for up to deadline_s per request (two of them).
        self._answer_within = 2 * deadline_s + 10.0
        self._lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None

    def read(self, group: str) -> tuple[Committed, Owners]:
        with self._lock:
            answer = self._ask_surviving_a_crash(group)
            if "error" in answer and answer["error"]["retryable"] and self._child is not None:
                # librdkafka may keep waiting on a coordinator whose broker died (it does
                # not always look for the new one): the next call starts a fresh client.
                self._discard(self._child)
        if "error" in answer:
            raise _error_of(answer["error"])
        committed = {(t, p): off for t, p, off in answer["committed"]}
        owners = {(t, p): member for t, p, member in answer["owners"]}
        return committed, owners

    def _ask_surviving_a_crash(self, group: str) -> dict[str, Any]:
        """Ask, and once more with a fresh child if the first one died mid-request (the
        abort is a race with a connection dropping: a new client usually gets through)."""
        try:
            return self._ask(group)
        except _HelperDied as exc:
            logger.warning("%s; asking once more", exc)
            return self._ask(group)

    def _ask(self, group: str) -> dict[str, Any]:
        child = self._running_child()
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(json.dumps({"group": group}) + "\n")
            child.stdin.flush()
            line = _read_line(child.stdout, self._answer_within)
        except (OSError, ValueError):
            line = ""
        if line:
            answer: dict[str, Any] = json.loads(line)
            return answer
        died = child.poll() is not None  # by itself, not killed by us for taking too long
        self._discard(child)
        raise (_HelperDied if died else BrokerUnavailable)(
            f"reading consumer group {group!r} failed: the Kafka admin helper process "
            f"exited with {child.returncode} (a librdkafka abort while a broker connection "
            "dropped); a new one starts on the next call",
            hint="retry; the cluster is moving (a broker died or rejoined)",
        )

    def _running_child(self) -> subprocess.Popen[str]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        if self._child is not None:
            self._discard(self._child)
        child = subprocess.Popen(
            [sys.executable, "-m", "shopsentry.bus.kafka_groups"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        assert child.stdin is not None and child.stdout is not None
        config = self._settings.model_dump(mode="json")
        if self._settings.sasl_password is not None:
            config["sasl_password"] = self._settings.sasl_password.get_secret_value()
        child.stdin.write(json.dumps({"bootstrap": self._bootstrap, "settings": config}) + "\n")
        child.stdin.flush()
        if _read_line(child.stdout, _START_TIMEOUT_S).strip() != '"ready"':
            self._discard(child)
            raise BrokerUnavailable(
                "the Kafka admin helper process did not start",
                hint="see the lines it printed above",
            )
        self._child = child
        return child

    def _discard(self, child: subprocess.Popen[str]) -> None:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._child is child:
            self._child = None

    def close(self) -> None:
        """Stop the child (its stdin closes: it exits by itself)."""
        with self._lock:
            if self._child is not None:
                self._discard(self._child)


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line, or "" if none came within ``timeout`` (or the stream ended)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ""
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            return stream.readline()


def _error_of(data: dict[str, Any]) -> ShopsentryError:
    kind = _ERRORS.get(data["type"])
    if kind is not None:
        return kind(data["message"], hint=data.get("hint"))
    error = BusError(data["message"], hint=data.get("hint"))
    error.retryable = bool(data.get("retryable", False))
    return error


class _GroupAdmin(KafkaLog):
    """The child's log: the coordinator-bound requests, with KafkaLog's retries."""

    def group_state(self, group: str) -> tuple[Committed, Owners]:
        """The group's committed offsets and partition owners, by (topic, partition).
        Coordinator-bound admin requests: only ever run in the child process."""
        self.ensure_reachable()
        offsets = self._call(
            lambda t: self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=t
            )[group],
            f"reading offsets of group {group!r}",
        )
        committed = {
            (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in offsets.topic_partitions or []
        }
        description = self._call(
            lambda t: self._admin.describe_consumer_groups([group], request_timeout=t)[group],
            f"describing group {group!r}",
        )
        owner: Owners = {}
        for member in description.members or []:
            assignment = member.assignment.topic_partitions if member.assignment else []
            for tp in assignment:
                owner[tp.topic, tp.partition] = member.client_id or member.member_id
        return committed, owner


def _serve() -> None:
    """The child: build a :class:`_GroupAdmin`, then answer one request per stdin line."""
    logging.basicConfig(level=logging.WARNING, format="kafka-groups %(levelname)s: %(message)s")
    first = sys.stdin.readline()
    if not first:
        return
    setup = json.loads(first)
    log = _GroupAdmin(setup["bootstrap"], KafkaSettings.model_validate(setup["settings"]))
    _answer("ready")
    for line in sys.stdin:
        group = json.loads(line)["group"]
        try:
            committed, owners = log.group_state(group)
            answer: dict[str, Any] = {
                "committed": [[t, p, off] for (t, p), off in committed.items()],
                "owners": [[t, p, m] for (t, p), m in owners.items()],
            }
        except ShopsentryError as exc:
            answer = {
                "error": {
                    "type": type(exc).__name__,
                    "message": exc.message,
                    "hint": exc.hint,
                    "retryable": exc.retryable,
                }
            }
        _answer(answer)


def _answer(value: object) -> None:
    """One JSON line to the parent (stdout is the channel, not a log)."""
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _serve()
