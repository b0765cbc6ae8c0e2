"""`batch run` prints a readable result: nested metrics as rows, floats to 4 digits."""

from __future__ import annotations

from shopsentry.cli.batch import _RUNNERS, Job, _echo_result, readable


def test_floats_are_short_and_counts_have_commas() -> None:
    assert readable(0.45454545454545453) == "0.4545"
    assert readable(3109.0) == "3,109"
    assert readable(36435) == "36,435"
    assert readable(None) == "None" and readable(True) == "True"


def test_a_retrain_result_is_no_json_blob(capsys) -> None:  # type: ignore[no-untyped-def]
    _echo_result(
        {
            "version": "1",
            "metrics": {"pr_auc": 0.885154560921349, "rows": 3109.0},
        },
        as_json=False,
    )
    out = capsys.readouterr().out
    assert "{" not in out and "0.885154560921349" not in out
    assert "pr_auc" in out and "0.8852" in out and "3,109" in out


def test_every_job_has_a_runner() -> None:
    """`batch run JOB` dispatches through a table: a job added to the enum needs its runner."""
    assert set(_RUNNERS) == set(Job)
