"""``housing rollout auto``'s flags: the live-accuracy gate's are checked like ``rollout run``'s, before
anything reaches the cluster (the runner's loop with the gate: tests/integration/test_rollout_auto.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rollout.cli import app

runner = CliRunner()
BASE = ["auto", "--prometheus-url", "http://127.0.0.1:9"]


def test_auto_has_the_live_gate_flags():
    out = runner.invoke(app, ["auto", "--help"], terminal_width=200).output
    flags = ("--live-gate", "--live-log", "--live-min-labels", "--live-tolerance", "--live-days", "--require-labels")
    for flag in flags:
        assert flag in out, flag


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--require-labels"], "--require-labels needs --live-gate"),
        (["--live-gate", "--live-log", "/tmp/x", "--live-min-labels", "1"], "--live-min-labels must be at least 2"),
        (["--live-gate", "--live-log", "/tmp/x", "--live-tolerance", "-0.1"], "--live-tolerance must be 0 or more"),
        (["--live-gate", "--live-log", "/tmp/x", "--live-days", "0"], "--live-days must be positive"),
    ],
)
def test_bad_live_gate_flags_exit_2_naming_the_flag(flags, message):
    result = runner.invoke(app, [*BASE, *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output
