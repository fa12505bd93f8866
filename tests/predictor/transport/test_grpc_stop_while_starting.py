"""SIGTERM while the gRPC server is still starting: a clean stop, not a segmentation fault.

With ``--workers`` > 1 the parent spawns its REST workers and starts gRPC in the same ``asyncio.gather``;
a SIGTERM in that window made KServe's ``stop`` call ``grpc.aio``'s ``Server.stop`` while the server's
``start`` was still in progress, which kills the process with SIGSEGV inside grpc (``grpc.aio`` 1.85.3:
``start`` as a task, one loop step, ``stop`` — every time). :class:`GuardedGRPCServer` lets a start in
progress finish before it stops, and does not start a server whose stop came first.

Each case runs in a fresh interpreter, so a crash fails the test instead of ending pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from common.net import free_port
    from predictor.guard.policy import Guard, GuardConfig
    from predictor.transport.grpc_server import CallGuard, GuardedGRPCServer

    LIMITS = {"grpc_max_send_message_length": 1 << 20, "grpc_max_receive_message_length": 1 << 20}

    async def main(steps: int) -> None:
        repo = ModelRepository()
        server = GuardedGRPCServer(
            free_port(), DataPlane(repo), ModelRepositoryExtension(repo), LIMITS,
            calls=CallGuard(Guard(GuardConfig()), count_error=lambda *_: None), grace_period=1,
        )
        started = asyncio.ensure_future(server.start(max_workers=1))
        for _ in range(steps):  # the signal lands after this many loop steps of the start
            await asyncio.sleep(0)
        await server.stop(15)
        await asyncio.wait_for(started, 10)  # and the start ends: nothing keeps serving
        print("stopped", steps, flush=True)

    asyncio.run(main(int(sys.argv[1])))
    """
)


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5])
def test_a_stop_while_the_grpc_server_starts_ends_it_cleanly(steps: int) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", SCRIPT, str(steps)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    assert f"stopped {steps}" in done.stdout
    assert "Traceback" not in done.stderr and "Fatal Python error" not in done.stderr, done.stderr
