"""A SIGTERM whose handler runs before the servers' event loop: the process ends by the signal, quietly.

KServe sets its handler just before ``asyncio.run``; ``ModelServer.stop`` then needs a running loop
(``asyncio.create_task``) and raised ``no running event loop`` from the signal handler, wherever the
main thread was. :class:`DrainingModelServer` ends the process by the signal instead, as a SIGTERM
before the handler does (nothing serves yet, nothing to drain). In a fresh interpreter: the process dies.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import signal
from predictor.transport.shutdown import DrainingModelServer

server = DrainingModelServer.__new__(DrainingModelServer)  # its handler, no loop running
server.stop(signal.SIGTERM)
print("still running")
"""


def test_a_stop_before_the_event_loop_ends_the_process_by_the_signal() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stderr[-2000:])
    assert "still running" not in done.stdout and "Traceback" not in done.stderr, done.stderr
