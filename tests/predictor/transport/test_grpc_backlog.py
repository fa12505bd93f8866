"""The gRPC server's backlog in gRPC core: calls it cannot take while its event loop is busy wait there up to a
bound (:func:`~predictor.transport.grpc_server.grpc_backlog`: what the process can hold, at least
:data:`~predictor.transport.grpc_server.MIN_GRPC_BACKLOG`), and beyond it are refused at once, not held to
their deadline.

A real ``grpc.aio`` server built by :class:`GuardedGRPCServer` (KServe's data plane, no model: the
health RPCs need none) runs on a loop in a thread (:func:`testkit.grpc_thread.guarded_grpc_in_thread`);
the test blocks that loop, as a saturated loop shared with REST does, and sends more calls than the
backlog holds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from predictor.guard.policy import Guard, GuardConfig
from predictor.transport.grpc_server import grpc_backlog
from testkit.grpc_thread import guarded_grpc_in_thread

CAP = 4
BACKLOG = grpc_backlog(CAP, GuardConfig(max_concurrency=CAP).queued_rpcs)
CALLS = 3 * BACKLOG
STALL_SECONDS = 5.0


def test_calls_the_busy_server_cannot_take_are_refused_at_once_not_queued_to_the_deadline():
    port, loop = guarded_grpc_in_thread(Guard(GuardConfig(max_concurrency=CAP)))
    stalled = threading.Event()

    def stall() -> None:  # a loop busy with other work (REST shares it) takes no gRPC call
        stalled.set()
        time.sleep(STALL_SECONDS)
        stalled.clear()

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        loop.call_soon_threadsafe(stall)
        assert stalled.wait(30)
        answered_while_stalled: list[bool] = []  # filled by gRPC's thread as each call ends
        calls = [stub.ServerLive.future(pb.ServerLiveRequest(), timeout=30) for _ in range(CALLS)]
        for call in calls:
            call.add_done_callback(lambda _: answered_while_stalled.append(stalled.is_set()))
        codes = Counter(call.code().name for call in calls)  # code() waits for the call to end
        early = sum(answered_while_stalled)
        print(f"\n{CALLS} calls, loop stalled {STALL_SECONDS:g} s, cap {CAP}: {dict(codes)}, {early} ended in it")
        assert set(codes) <= {"OK", "CANCELLED"}, codes
        # about BACKLOG calls wait for the loop and are answered after it; the rest are refused by gRPC core
        # while the loop is still stalled, not held until it (or the deadline) comes
        assert codes["CANCELLED"] >= CALLS - 2 * BACKLOG, codes
        assert codes["OK"] >= BACKLOG, codes  # the backlog was held, and served once the loop was back
        assert early == codes["CANCELLED"], (codes, early)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live  # and it serves again after
