"""`housing rollout status --watch`: the live view shows the split and the latest run's gates."""

from __future__ import annotations

import os
import time

from rich.console import Console
from typer.testing import CliRunner

from rollout.backends.base import RolloutStatus
from rollout.cli import app
from rollout.watch import latest_log, snapshot, watch
from testkit.rollout_runs import run_to_log


def render(renderable) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable)
    return console.export_text()


def status() -> RolloutStatus:
    return RolloutStatus("local", "u1", "u2", 90, 10, True, "1", "2")


def test_view_of_a_rolled_back_run(tmp_path):
    log = run_to_log(tmp_path, 0.3)
    text = render(snapshot(status, lambda: log.path))
    assert "champion 90% 1" in text and "challenger 10% 2" in text
    assert "ROLLED BACK" in text and "error_rate=0.3 > 0.01" in text
    assert "30.00 % > 1.00 %" in text  # the failing gate against its threshold
    assert "10.0 ms ≤ 500.0 ms" in text
    assert "hold" in text and "rollback" in text and "10/90" in text and "500/500" in text


def test_view_without_a_run_or_a_status(tmp_path):
    def broken() -> RolloutStatus:
        raise ConnectionError("router unreachable\nmore")

    text = render(snapshot(broken, lambda: None))
    assert "status: router unreachable" in text and "no rollout run logged yet" in text


def test_latest_log_is_the_newest_of_the_deployment(tmp_path):
    (tmp_path / "rollouts").mkdir()
    assert latest_log(tmp_path, "housing") is None
    old, new, other = (tmp_path / "rollouts" / n for n in ("housing-1.jsonl", "housing-2.jsonl", "other-3.jsonl"))
    for i, path in enumerate((old, new, other)):
        path.write_text("")
        os.utime(path, (time.time() + i, time.time() + i))
    assert latest_log(tmp_path, "housing") == new


def test_watch_refreshes_until_count(tmp_path):
    log = run_to_log(tmp_path, 0.0)
    calls, sleeps = [], []

    def counted() -> RolloutStatus:
        calls.append(1)
        return status()

    console = Console(record=True, width=200, color_system=None, force_terminal=False)
    watch(counted, lambda: log.path, every=5, count=3, console=console, sleep=sleeps.append)
    assert len(calls) == 3 and sleeps == [5, 5]
    assert "PROMOTED" in console.export_text()


def test_cli_status_watch(tmp_path, monkeypatch):
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path))
    log = run_to_log(tmp_path, 0.0)
    log.path.rename(tmp_path / "rollouts" / "housing-20260101T000000-aaaaaa.jsonl")
    result = CliRunner().invoke(app, ["status", "--watch", "--every", "0.01", "--count", "2", "--name", "housing"])
    assert result.exit_code == 0, result.output
    assert "not ready" in result.output and "PROMOTED" in result.output and "all steps passed" in result.output
    bad = CliRunner().invoke(app, ["status", "--watch", "--every", "0"])
    assert bad.exit_code == 2 and "--every must be positive" in bad.output
