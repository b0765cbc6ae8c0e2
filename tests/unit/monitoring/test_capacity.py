"""The planner must reproduce the design's section-3 figures line by line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shopsentry.cli import app
from shopsentry.errors import ConfigError
from shopsentry.monitoring.capacity import (
    DESIGN_STAGES,
    Stage,
    merge_stages,
    parse_stage,
    plan,
    round_up_nice,
    scaling_plan,
)


def test_seed_section_3_numbers() -> None:
    p = plan(1000 / 3600, 3000 / 3600)
    assert p.expected_per_s == 0.28
    assert p.peak_per_s == 0.83
    assert p.w_s == pytest.approx(0.32)
    assert p.l_normal == 0.09
    assert p.l_peak == 0.27
    assert p.l_buffered == 1.35
    assert p.l_buffered_slots == 2
    assert p.per_worker_per_s == 3.125
    assert p.per_worker_per_h == 11_250
    assert p.workers_needed == pytest.approx(3000 / 11_250)
    assert p.workers_minimum == 1
    assert p.workers_recommended == 2
    assert p.queue_needed == 996
    assert p.queue_recommended == 1000
    assert p.partitions_recommended == 3
    assert (p.expected_per_h, p.peak_per_h) == pytest.approx((1000, 3000))


def test_exact_mode_does_not_round_intermediate_steps() -> None:
    p = plan(1000 / 3600, 3000 / 3600, decimals=None)
    assert p.queue_needed == pytest.approx(1000.0)
    assert p.l_peak == pytest.approx(3000 / 3600 * 0.32)
    assert p.l_buffered == pytest.approx(3000 / 3600 * 0.32 * 5)
    assert p.l_buffered_slots == 2


def test_heavier_load_needs_more_workers_and_partitions() -> None:
    # 50,000/h at W = 320 ms: 13.9/s over 3.125/s per worker = 4.44 → 5 workers.
    p = plan(20_000 / 3600, 50_000 / 3600)
    assert p.workers_minimum == 5
    assert p.workers_recommended == 5
    assert p.partitions_recommended == 5


def test_stage_overrides_change_w() -> None:
    stages = merge_stages(DESIGN_STAGES, [parse_stage("ml_inference=2"), parse_stage("cache=3ms")])
    assert [s.name for s in stages][-1] == "cache"
    p = plan(1000 / 3600, 3000 / 3600, stages)
    assert p.w_s == pytest.approx((10 + 100 + 2 + 10 + 3) / 1000)


@pytest.mark.parametrize("bad", ["ml_inference", "=5", "x=-1", "x=abc", "x=nan"])
def test_bad_stage_is_a_one_line_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="bad stage"):
        parse_stage(bad)


def test_plan_refuses_nonsense() -> None:
    with pytest.raises(ConfigError):
        plan(0, 1)
    with pytest.raises(ConfigError):
        plan(1, 1, (Stage("a", 0),))


@pytest.mark.parametrize(
    ("value", "nice"), [(996, 1000), (2490, 2500), (12, 12), (0.5, 1), (101, 110)]
)
def test_round_up_nice(value: float, nice: int) -> None:
    assert round_up_nice(value) == nice


def test_scaling_steps_for_50000_per_hour_follow_section_5() -> None:
    s = scaling_plan(50_000 / 3600, 3.125)
    assert [t.partitions for t in s.steps] == [3, 6, 6, 12]
    assert [t.brokers for t in s.steps] == [3, 3, 5, 7]
    assert [t.consumers for t in s.steps] == [2, 4, 4, 6]
    assert [t.warehouse for t in s.steps] == ["X-Small", "X-Small", "Small", "Medium"]
    assert s.workers_needed == 5
    assert any("10,000" in t for t in s.triggers)
    assert not s.notes


def test_scaling_adds_a_step_when_measured_workers_exceed_the_tier() -> None:
    # A slow worker (1 event/s) needs 14 consumers for 50,000/h: more than the design's 6.
    s = scaling_plan(50_000 / 3600, 1.0)
    assert s.workers_needed == 14
    assert s.steps[-1].consumers == 14
    assert s.steps[-1].partitions == 14


def test_scaling_past_the_seed_ceiling_says_so() -> None:
    s = scaling_plan(200_000 / 3600, 1000.0)
    assert s.notes and "100,000" in s.notes[0]


def test_cli_json_reproduces_the_seed() -> None:
    result = CliRunner().invoke(app, ["capacity", "--json", "--target", "50000/h"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["plan"]["l_buffered"] == 1.35
    assert data["plan"]["queue_needed"] == 996
    assert data["plan"]["per_worker_per_h"] == 11_250
    assert data["measured"] is None
    assert [t["partitions"] for t in data["scaling"]["steps"]] == [3, 6, 6, 12]


def test_cli_table_shows_the_seed_figures() -> None:
    result = CliRunner().invoke(
        app, ["capacity", "--rate", "1000/h", "--peak", "3000/h"], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    for figure in (
        "0.28 events/s",
        "0.83 events/s",
        "0.09 events",
        "0.27 events",
        "1.35 → 2",
        "3.125",
        "11,250",
        "996 → 1,000",
    ):
        assert figure in result.output


def test_cli_bad_rate_is_one_line() -> None:
    result = CliRunner().invoke(app, ["capacity", "--rate", "lots"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
