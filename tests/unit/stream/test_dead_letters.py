"""Dead-letter warnings: the first in full, then one line per interval with counts."""

from __future__ import annotations

import logging

import pytest

from shopsentry.stream.dead_letters import DeadLetterLog


def test_ten_thousand_dead_letters_make_a_handful_of_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = DeadLetterLog(logging.getLogger("dlq-test"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="dlq-test"):
        for i in range(10_000):
            now[0] = i * 0.001  # 10 s of bad input
            log.note("purchase-events", 0, i, "decode" if i % 2 else "route", f"bad {i}")
        log.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0] == "dead-lettering purchase-events[0]@0 at route: bad 0"
    assert lines[1].startswith("dead-lettered 9999 more record(s) in the last 10s")
    assert "decode: 5000, route: 4999" in lines[1] and "@9999" in lines[1]


def test_after_a_quiet_interval_the_next_one_is_logged_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = DeadLetterLog(logging.getLogger("dlq-test"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="dlq-test"):
        log.note("t", 0, 1, "decode", "a")
        log.note("t", 0, 2, "decode", "b")
        now[0] = 11.0
        log.note("t", 0, 3, "decode", "c")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].endswith("@1 at decode: a")
    assert lines[1].startswith("dead-lettered 1 more") and lines[2].endswith("@3 at decode: c")
