"""A full gRPC server — every slot of ``--max_concurrency`` taken and its queue of ``--max_queued_rpcs`` full —
refuses with RESOURCE_EXHAUSTED and the reason (both limits and the flags that raise them, as REST's 503
names its limit), counted as 503, never CANCELLED; the calls it holds and those it queued still succeed, and
the health RPCs still answer.

A real ``grpc.aio`` server built by :class:`GuardedGRPCServer` (KServe's data plane) runs on a loop in a
thread, as in ``test_grpc_backlog.py``, serving a model whose ``predict`` waits until the test lets it go:
``CAP`` such calls fill the slots, ``QUEUED`` more the queue.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from kserve import Model
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferOutput, InferResponse

from predictor.guard.policy import Guard, GuardConfig, overloaded_message
from testkit.grpc_thread import guarded_grpc_in_thread
from testkit.poll import poll

CAP = 2
QUEUED = 8
EXTRA = 40  # beyond the queue


class HeldModel(Model):
    """Answers once the test releases it; counts the calls waiting in ``predict``."""

    def __init__(self) -> None:
        super().__init__("held")
        self.ready = True
        self.waiting = 0
        self.go = asyncio.Event()  # bound to the server's loop when first awaited there

    async def predict(self, payload, headers=None):  # noqa: ANN001, ANN201 - KServe's signature
        self.waiting += 1
        await self.go.wait()
        output = InferOutput(name="y", shape=[1], datatype="FP64", data=[1.0])
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


def _guard(refused: list) -> Guard:
    """A guard capped at ``CAP`` calls and ``QUEUED`` waiting, whose refusals land in ``refused``."""
    guard = Guard(GuardConfig(max_concurrency=CAP, max_queued_rpcs=QUEUED))
    guard.on_refused = lambda protocol, reason: refused.append((protocol, reason))
    return guard


def _request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="held", id="r")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[1])
    tensor.contents.fp64_contents.append(1.0)
    return request


def test_a_full_server_refuses_with_resource_exhausted_naming_the_limits_and_serves_what_it_holds():
    model, refused, counted = HeldModel(), [], []
    guard = _guard(refused)
    port, loop = guarded_grpc_in_thread(
        guard, model, count_request=lambda protocol, code: counted.append((protocol, code))
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        held = [stub.ModelInfer.future(_request(), timeout=60) for _ in range(CAP)]
        assert poll(lambda: model.waiting == CAP, bool, interval=0.02), model.waiting  # every slot taken
        queued = [stub.ModelInfer.future(_request(), timeout=60) for _ in range(QUEUED)]
        assert poll(lambda: guard.rpcs.waiting == QUEUED, bool, interval=0.02), guard.rpcs.waiting  # the queue full
        extra = [stub.ModelInfer.future(_request(), timeout=60) for _ in range(EXTRA)]
        for call in extra:
            assert call.exception(timeout=30) is not None, "a call beyond the queue was served"
        codes = Counter(call.code().name for call in extra)
        details = {call.details() for call in extra}
        print(f"\ncap {CAP}, queue {QUEUED}, {EXTRA} more calls while full: {dict(codes)}, details {details}")
        assert codes == {"RESOURCE_EXHAUSTED": EXTRA}, codes  # none CANCELLED by gRPC core
        assert details == {overloaded_message(CAP, QUEUED)}, details
        for limit in (f"{CAP} calls in progress", f"{QUEUED} waiting", "--max_concurrency", "--max_queued_rpcs"):
            assert limit in overloaded_message(CAP, QUEUED), limit
        for call in extra:
            assert ("retry-after", "1") in tuple(call.trailing_metadata() or ()), call.trailing_metadata()
        assert refused == [("grpc", "Overloaded")] * EXTRA, refused
        # counted as REST counts its busy answer (503, a failure to the rollout's 5xx gate), not as the rate
        # limit's 429 that RESOURCE_EXHAUSTED maps to (counted once its status is sent: after the client saw it)
        assert poll(lambda: len(counted) >= EXTRA, bool, interval=0.02), counted
        assert counted == [("grpc", 503)] * EXTRA, counted
        # the health RPCs are never counted (as REST's probes are not): a full server still answers them
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert stub.ModelReady(pb.ModelReadyRequest(name="held"), timeout=10).ready
        assert all(not call.done() for call in held + queued) and model.waiting == CAP
        loop.call_soon_threadsafe(model.go.set)
        for call in held + queued:  # the queued calls were served in their turn
            assert call.result(timeout=30).outputs[0].contents.fp64_contents == [1.0]
        assert model.waiting == CAP + QUEUED
        # and the slots came back
        assert stub.ModelInfer(_request(), timeout=30).outputs
        assert poll(lambda: len(counted) == EXTRA + CAP + QUEUED + 1, bool, interval=0.02), counted
        assert counted[EXTRA:] == [("grpc", 200)] * (CAP + QUEUED + 1), counted
        # given back once each call's task has ended
        assert poll(lambda: guard.rpcs.used == 0, bool, interval=0.02), guard.rpcs.used
        assert guard.rpcs.waiting == 0 and guard.inflight.used == 0, (guard.rpcs.waiting, guard.inflight.used)


def test_calls_that_end_early_give_their_slot_back():
    """Calls cut off by their deadline while they wait in the model or in the queue, or refused, leave no slot,
    queue place or byte taken."""
    model, guard = HeldModel(), _guard([])
    port, loop = guarded_grpc_in_thread(guard, model)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        calls = [stub.ModelInfer.future(_request(), timeout=0.5) for _ in range(20)]
        codes = {call.code() for call in calls}  # waits for each to end
        assert codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert poll(lambda: guard.rpcs.used == 0, bool, interval=0.02), guard.rpcs.used
        assert guard.rpcs.waiting == 0 and guard.inflight.used == 0, (guard.rpcs.waiting, guard.inflight.used)
        loop.call_soon_threadsafe(model.go.set)
        assert stub.ModelInfer(_request(), timeout=30).outputs
        assert poll(lambda: guard.rpcs.used == 0, bool, interval=0.02), guard.rpcs.used
