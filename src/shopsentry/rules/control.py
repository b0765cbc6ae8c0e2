"""Rules and lists travel to every detector worker over one compacted control topic.

The topic has one partition, so its offsets are a total order of changes: the rule set's
**version** is the number of changes applied (the next offset), the same in every worker
and in the API that wrote it, with no coordination. Each record is one upsert keyed by
what it changes (``rule:<name>``, ``entry:<list>:<entity>:<value>``), so compaction keeps
the latest state of everything and a new worker rebuilds the set by reading the topic
from the start. Nothing is ever deleted: a rule is disabled, a list entry expires (or is
expired now), which keeps the history explainable.

A :class:`RuleSetFollower` reads the topic on a background thread and hands a compiled
rule set to the worker between batches (as the model holder does with a new champion);
:meth:`RuleSetFollower.load_initial` reads up to the end offset before the first purchase
is decided, so a worker never decides with a list it has not loaded yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from shopsentry.bus.base import Consumer, EventLog, Producer, Record
from shopsentry.errors import UnknownTopic
from shopsentry.rules.engine import CompiledRuleSet
from shopsentry.rules.model import ListEntry, Rule, RuleSet

logger = logging.getLogger(__name__)


class Change(BaseModel):
    """One record of the control topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rule", "entry"]
    rule: Rule | None = None
    entry: ListEntry | None = None
    changed_by: str = ""
    changed_at: datetime

    @property
    def key(self) -> str:
        if self.rule is not None:
            return f"rule:{self.rule.name}"
        assert self.entry is not None
        return f"entry:{self.entry.key}"


def rule_change(rule: Rule, changed_by: str) -> Change:
    return Change(kind="rule", rule=rule, changed_by=changed_by, changed_at=datetime.now(UTC))


def entry_change(entry: ListEntry, changed_by: str) -> Change:
    return Change(kind="entry", entry=entry, changed_by=changed_by, changed_at=datetime.now(UTC))


def publish(producer: Producer, topic: str, changes: Sequence[Change]) -> None:
    """Write ``changes`` in order and wait until they are durable."""
    for change in changes:
        producer.send(topic, change.model_dump_json().encode(), change.key.encode(), partition=0)
    producer.flush()


class RuleSetBuilder:
    """Control records applied in offset order to a rule set kept by key; the frozen
    :class:`RuleSet` is built once per run of records, so loading a topic of N list
    entries costs O(N), not O(N²)."""

    def __init__(self, rule_set: RuleSet | None = None) -> None:
        start = rule_set or RuleSet()
        self.version = start.version
        self._rules = {r.name: r for r in start.rules}
        self._entries = {e.key: e for e in start.entries}

    def apply(self, records: Sequence[Record]) -> None:
        """Apply ``records``; the version becomes the last one's offset + 1."""
        for record in records:
            self.version = record.offset + 1
            try:
                change = Change.model_validate(orjson.loads(record.value))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                # A record this build cannot read (written by a newer one?) must not stop
                # the worker; it is skipped loudly and the version still advances past it.
                logger.error("control record at offset %d skipped: %s", record.offset, exc)
                continue
            if change.rule is not None:
                self._rules.pop(change.rule.name, None)  # an updated rule moves last
                self._rules[change.rule.name] = change.rule
            elif change.entry is not None:
                self._entries[change.entry.key] = change.entry

    def build(self) -> RuleSet:
        return RuleSet.model_construct(
            version=self.version,
            rules=tuple(self._rules.values()),
            entries=tuple(self._entries.values()),
        )


class RuleSetFollower:
    """The current rule set, kept up to date from the control topic."""

    def __init__(
        self,
        log: EventLog,
        topic: str,
        *,
        poll_interval_s: float = 0.25,
        on_change: Callable[[RuleSet], None] | None = None,
    ) -> None:
        self._log = log
        self._topic = topic
        self.poll_interval_s = poll_interval_s
        self._on_change = on_change or (lambda _rs: None)
        self.rule_set = RuleSet()
        self._builder = RuleSetBuilder()
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._feature_names: tuple[str, ...] = ()
        self._compiled: CompiledRuleSet | None = None
        self._pending: CompiledRuleSet | None = None

    # -- reading ----------------------------------------------------------------------
    def _open(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self._log.consumer(None, [self._topic], client_id="rules-follower")
        return self._consumer

    def poll_once(self, timeout: float = 0.0) -> bool:
        """Apply what the topic has now; True when the rule set changed."""
        consumer = self._open()
        changed = False
        while records := consumer.poll(max_records=1000, timeout=timeout):
            self._builder.apply(records)
            changed = True
            timeout = 0.0
        if changed:
            rule_set = self._builder.build()
            with self._lock:
                self.rule_set = rule_set
            self._on_change(rule_set)
        return changed

    def load_initial(
        self, feature_names: Sequence[str], *, timeout_s: float = 30.0
    ) -> CompiledRuleSet:
        """Read the topic to its end offset, then compile: the first batch's rule set."""
        self._feature_names = tuple(feature_names)
        end = self._end_offset()
        if end is None:
            logger.warning(
                "rules: control topic %s does not exist (create it with `shopsentry topics "
                "create`); deciding without analyst rules until it does",
                self._topic,
            )
            self._compiled = CompiledRuleSet(self.rule_set, self._feature_names)
            return self._compiled
        consumer = self._open()
        deadline = time.monotonic() + timeout_s
        while self._builder.version < end and time.monotonic() < deadline:
            self._builder.apply(consumer.poll(max_records=1000, timeout=0.2))
        self.rule_set = self._builder.build()
        if self.rule_set.version < end:
            logger.warning(
                "rules: read %d of %d control records within %.0fs; starting with version %d",
                self.rule_set.version, end, timeout_s, self.rule_set.version,
            )  # fmt: skip
        self._compiled = CompiledRuleSet(self.rule_set, self._feature_names)
        return self._compiled

    def _end_offset(self) -> int | None:
        """The control topic's end offset; None while the topic does not exist."""
        try:
            info = self._log.describe_topic(self._topic)
        except UnknownTopic:
            return None
        return max((p.end_offset for p in info.partitions), default=0)

    # -- serving the worker -----------------------------------------------------------
    @property
    def current(self) -> CompiledRuleSet | None:
        return self._compiled

    def recompile(self, feature_names: Sequence[str]) -> None:
        """After a model change: the same rules against the new model's feature names."""
        self._feature_names = tuple(feature_names)
        with self._lock:
            rule_set = self.rule_set
        self._pending = CompiledRuleSet(rule_set, self._feature_names)

    def swap_if_ready(self) -> CompiledRuleSet | None:
        """Between batches: take the newly compiled rule set if there is one."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._compiled = pending
        return pending

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rules-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._consumer is None and self._end_offset() is None:
                    self._stop.wait(5.0)  # the topic may be created later
                    continue
                if self.poll_once(timeout=self.poll_interval_s):
                    with self._lock:
                        rule_set = self.rule_set
                    self._pending = CompiledRuleSet(rule_set, self._feature_names)
                    logger.info("rules: version %d ready", rule_set.version)
            except Exception:  # the control topic being away must not stop detection
                logger.warning("rules: reading the control topic failed; retrying", exc_info=True)
                self._stop.wait(1.0)


def read_rule_set(log: EventLog, topic: str, *, timeout_s: float = 10.0) -> RuleSet:
    """The rule set as of now (for the API and the CLI): read the topic to its end."""
    follower = RuleSetFollower(log, topic)
    try:
        follower.load_initial((), timeout_s=timeout_s)
        return follower.rule_set
    finally:
        follower.stop()
