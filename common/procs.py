"""Stopping a process we started: the one way it is done (tests, benchmarks, the rollout's Prometheus),
by its ``Popen`` (``stop_process``) or, for one started by an earlier command, by its id (``stop_pid``:
the local rollout backend's predictors and router).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time


def _send(proc: subprocess.Popen, sig: int, group: bool) -> None:
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


def stop_process(
    proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM, *, group: bool = False
) -> int | None:
    """Send ``sig`` (SIGTERM) to ``proc`` — to its whole process group with ``group`` (a process started
    in a session of its own) — then SIGKILL after ``timeout`` s; returns the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        _send(proc, sig, group)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _send(proc, signal.SIGKILL, group)
            proc.wait(5)
    except ProcessLookupError:  # the group went away between the check and the signal
        proc.wait(5)
    return proc.returncode


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs (a zombie child of ours counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int | None, timeout: float = 10.0) -> None:
    """SIGTERM one process we started (by its id), SIGKILL after ``timeout``."""
    if not pid_alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
