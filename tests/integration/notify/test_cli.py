"""`shopsentry notify` as an operator runs it: a real process over the embedded log."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.notify.conftest import make_alert, make_settings, publish

pytestmark = pytest.mark.integration


def _notify(
    data_dir: Path, env_extra: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSENTRY_")}
    env.update({"SHOPSENTRY_DATA_DIR": str(data_dir), **env_extra})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "shopsentry",
            "notify",
            "--metrics-port",
            "0",
            "--until-idle",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_mailbox_receives_every_alert_once_across_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", "local", None, None)
    alerts = [make_alert(1, "medium"), make_alert(2, "high"), make_alert(3, "critical")]
    publish(settings, alerts)
    env = {
        "SHOPSENTRY_TOPICS__FRAUD_ALERTS__NAME": settings.topics.fraud_alerts.name,
        "SHOPSENTRY_TOPICS__FRAUD_ALERTS__PARTITIONS": "2",
        "SHOPSENTRY_NOTIFIER__GROUP_ID": settings.notifier.group_id,
    }

    first = _notify(settings.data_dir, env, "--demo")
    assert first.returncode == 0, first.stderr
    assert "delivered 3" in first.stderr

    mails = sorted((settings.data_dir / "mailbox").glob("*.eml"))
    ids = sorted(email.message_from_bytes(p.read_bytes())["X-Shopsentry-Alert-Id"] for p in mails)
    assert ids == sorted(a.alert_id for a in alerts)

    publish(settings, [make_alert(4, "high")])
    second = _notify(settings.data_dir, env, "--demo")
    assert second.returncode == 0, second.stderr
    assert "alerts 1, delivered 1" in second.stderr
    assert len(list((settings.data_dir / "mailbox").glob("*.eml"))) == 4


def test_no_channel_is_a_one_line_error(tmp_path: Path) -> None:
    result = _notify(tmp_path / "data", {})
    assert result.returncode == 1
    assert "no notification channel is configured" in result.stderr
    assert "Traceback" not in result.stderr
