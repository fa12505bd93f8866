"""A real ``grpc.aio`` server built by :class:`~predictor.transport.grpc_server.GuardedGRPCServer` (KServe's
data plane over the given models) on an event loop in a thread of the test process, so a test can block
that loop or hold the models' calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from kserve import Model
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from common.net import free_port
from predictor.guard.policy import Guard
from predictor.transport.grpc_server import CallGuard, GuardedGRPCServer

MESSAGE_LIMITS = {"grpc_max_send_message_length": 1 << 20, "grpc_max_receive_message_length": 1 << 20}


def guarded_grpc_in_thread(
    guard: Guard,
    *models: Model,
    timeout: float = 30.0,
    count_request: Callable[[str, int], None] | None = None,
) -> tuple[int, asyncio.AbstractEventLoop]:
    """Start the server (``max_workers=1``) in a daemon thread; its port and its loop once it listens.

    ``count_request(protocol, status)`` gets every counted call, as ``housing_requests_total`` would.

    Raises what stopped the server when it ended before listening, ``TimeoutError`` when it did not
    listen within ``timeout`` seconds."""
    port, loops, ready, failed = free_port(), [], threading.Event(), []

    async def main() -> None:
        repo = ModelRepository()
        for model in models:
            repo.update(model)
        server = GuardedGRPCServer(
            port, DataPlane(repo), ModelRepositoryExtension(repo), MESSAGE_LIMITS,
            calls=CallGuard(guard, count_error=lambda *_: None, count_request=count_request),
        )  # fmt: skip
        loops.append(asyncio.get_running_loop())
        task = asyncio.create_task(server.start(max_workers=1))
        while server._server is None and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raise what stopped it
        ready.set()
        await task

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller when it stopped the start
            failed.append(exc)
            ready.set()

    threading.Thread(target=run, daemon=True).start()
    if not ready.wait(timeout):
        raise TimeoutError(f"the gRPC server on port {port} did not listen within {timeout:g} s")
    if failed:
        raise failed[0]
    return port, loops[0]
