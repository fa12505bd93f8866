"""Stopping a process we started, by its Popen or by its id."""

from __future__ import annotations

import subprocess
import sys

from common.procs import pid_alive, stop_pid, stop_process

IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
)


def _started(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_stop_pid_terminates_a_process_by_its_id_and_a_reaped_one_is_gone() -> None:
    proc = _started("import time; print('ready', flush=True); time.sleep(60)")
    assert pid_alive(proc.pid)
    stop_pid(proc.pid)
    assert not pid_alive(proc.pid)  # stop_pid reaped our child: no zombie left counted as running
    proc.wait(5)


def test_stop_pid_kills_a_process_that_ignores_sigterm_after_the_timeout() -> None:
    proc = _started(IGNORES_TERM)
    stop_pid(proc.pid, timeout=0.5)
    assert proc.wait(5) == -9  # SIGKILL: it outlived the SIGTERM


def test_stop_process_returns_the_exit_code_and_nothing_is_alive() -> None:
    proc = _started(IGNORES_TERM)
    assert stop_process(proc, timeout=0.5) == -9
    assert not pid_alive(proc.pid)
    assert not pid_alive(None)
