"""The gRPC server's backlog: calls it cannot take while its event loop is busy are refused, not queued.

A real ``grpc.aio`` server built by :class:`GuardedGRPCServer` (KServe's data plane, no model: the
health RPCs need none) runs on a loop in a thread; the test blocks that loop, as a saturated loop
shared with REST does, and sends more calls than the backlog holds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import grpc
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from common.net import free_port
from predictor.guard.policy import Guard, GuardConfig
from predictor.transport.grpc_server import MIN_GRPC_BACKLOG, GuardedGRPCServer

CAP = 4
CALLS = 4 * MIN_GRPC_BACKLOG
STALL_SECONDS = 3.0
MESSAGE_LIMITS = {"grpc_max_send_message_length": 1 << 20, "grpc_max_receive_message_length": 1 << 20}


def _serve(port: int, loop_box: list, ready: threading.Event) -> None:
    async def main() -> None:
        repo = ModelRepository()
        server = GuardedGRPCServer(
            port, DataPlane(repo), ModelRepositoryExtension(repo), MESSAGE_LIMITS,
            guard=Guard(GuardConfig(max_concurrency=CAP)), count_error=lambda *_: None,
        )  # fmt: skip
        loop_box.append(asyncio.get_running_loop())
        task = asyncio.create_task(server.start(max_workers=1))
        while server._server is None and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raise what stopped it
        ready.set()
        await task

    asyncio.run(main())


def test_calls_the_busy_server_cannot_take_are_refused_at_once_not_queued_to_the_deadline():
    port, loop_box, ready = free_port(), [], threading.Event()
    threading.Thread(target=_serve, args=(port, loop_box, ready), daemon=True).start()
    assert ready.wait(30)
    stalled = threading.Event()

    def stall() -> None:  # a loop busy with other work (REST shares it) takes no gRPC call
        stalled.set()
        time.sleep(STALL_SECONDS)
        stalled.clear()

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        loop_box[0].call_soon_threadsafe(stall)
        assert stalled.wait(30)
        answered_while_stalled: list[bool] = []  # filled by gRPC's thread as each call ends
        calls = [stub.ServerLive.future(pb.ServerLiveRequest(), timeout=30) for _ in range(CALLS)]
        for call in calls:
            call.add_done_callback(lambda _: answered_while_stalled.append(stalled.is_set()))
        codes = Counter(call.code().name for call in calls)  # code() waits for the call to end
        early = sum(answered_while_stalled)
        print(f"\n{CALLS} calls, loop stalled {STALL_SECONDS:g} s, cap {CAP}: {dict(codes)}, {early} ended in it")
        assert set(codes) <= {"OK", "CANCELLED"}, codes
        # about MIN_GRPC_BACKLOG calls wait for the loop and are answered after it; the rest are refused by
        # gRPC core while the loop is still stalled, not held until it (or the deadline) comes
        assert codes["CANCELLED"] >= CALLS - 2 * MIN_GRPC_BACKLOG, codes
        assert early == codes["CANCELLED"], (codes, early)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live  # and it serves again after
