"""The API's view of the rule set: a follower of the control topic, a way to wait until
it has read a change the API just wrote (read-your-writes), and the audit of changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from shopsentry.bus.base import EventLog
from shopsentry.errors import UnknownTopic
from shopsentry.rules.audit import Audit
from shopsentry.rules.control import RuleSetFollower
from shopsentry.rules.model import RuleSet


class RulesState:
    def __init__(self, log: EventLog, topic: str, audit: Audit) -> None:
        self.log = log
        self.topic = topic
        self.audit = audit
        self._changed = threading.Condition()
        self.follower = RuleSetFollower(log, topic, on_change=self._notify)
        # Held by a request across read-current, publish and read-back, so the "before"
        # it audits is what its change replaced (within this API process).
        self.write_lock = threading.Lock()

    def _notify(self, _rule_set: RuleSet) -> None:
        with self._changed:
            self._changed.notify_all()

    def start(self, feature_names: Sequence[str]) -> None:
        self.follower.load_initial(feature_names)
        self.follower.start()

    @property
    def current(self) -> RuleSet:
        return self.follower.rule_set

    def end_offset(self) -> int:
        """The control topic's end offset now: the version a read-back must reach."""
        try:
            info = self.log.describe_topic(self.topic)
        except UnknownTopic:
            return 0
        return max((p.end_offset for p in info.partitions), default=0)

    def wait_for(self, version: int, timeout_s: float) -> RuleSet | None:
        """The rule set once the follower has read up to ``version``; None on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.follower.rule_set.version < version:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))
        return self.follower.rule_set

    def close(self) -> None:
        self.follower.stop()
        self.audit.close()
