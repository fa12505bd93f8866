"""A burst of calls at an idle predictor, well within what it can queue, is served: every call OK, none CANCELLED
by gRPC core's backlog and none refused by the cap on calls in flight.

A real ``grpc.aio`` server built by :class:`GuardedGRPCServer` (KServe's data plane, the default guard: 64 calls
in flight, 1,024 waiting) runs on a loop in a thread (:func:`testkit.grpc_thread.guarded_grpc_in_thread`),
serving a model whose ``predict`` yields to the loop for a moment, so that calls overlap past the cap as a
model's work does. Before 2026-12-08 gRPC core refused every call that found 64 not yet taken (CANCELLED, no
reason, never counted: 64-79 of 200 on this machine) and the cap refused the rest over 64 in flight at once
(RESOURCE_EXHAUSTED: 19-21 of 200).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from kserve import Model
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferOutput, InferResponse

from predictor.guard.policy import DEFAULT_MAX_CONCURRENCY, Guard, GuardConfig
from testkit.grpc_thread import guarded_grpc_in_thread
from testkit.poll import poll

BURST = 200
MODEL_SECONDS = 0.05


class BriefModel(Model):
    """Answers after yielding to the loop for ``MODEL_SECONDS``; counts the calls inside ``predict`` at once."""

    def __init__(self) -> None:
        super().__init__("brief")
        self.ready = True
        self.inside = 0
        self.most_inside = 0

    async def predict(self, payload, headers=None):  # noqa: ANN001, ANN201 - KServe's signature
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await asyncio.sleep(MODEL_SECONDS)
        finally:
            self.inside -= 1
        output = InferOutput(name="y", shape=[1], datatype="FP64", data=[2.0])
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


def _request(i: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="brief", id=f"r{i}")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[1])
    tensor.contents.fp64_contents.append(1.0)
    return request


def test_a_burst_of_200_calls_at_an_idle_predictor_is_all_served():
    model, counted = BriefModel(), []
    guard = Guard(GuardConfig())
    port, _ = guarded_grpc_in_thread(guard, model, count_request=lambda protocol, code: counted.append(code))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ModelInfer(_request(-1), timeout=30).outputs  # connected and warm: the burst is all that waits
        assert poll(lambda: len(counted) == 1, bool, interval=0.02), counted
        counted.clear()
        calls = [stub.ModelInfer.future(_request(i), timeout=60) for i in range(BURST)]
        codes = Counter(call.code().name for call in calls)  # code() waits for the call to end
        refused = {call.details() for call in calls if call.code() != grpc.StatusCode.OK}
        print(f"\nburst of {BURST}: {dict(codes)}, at most {model.most_inside} in predict at once, refused {refused}")
        assert codes == {"OK": BURST}, (codes, refused)
        assert all(call.result().id == f"r{i}" for i, call in enumerate(calls))
        assert poll(lambda: len(counted) == BURST, bool, interval=0.02), len(counted)
        assert Counter(counted) == {200: BURST}, Counter(counted)
    # the cap held while the burst waited its turn, and every slot, queue place and byte came back
    assert model.most_inside <= DEFAULT_MAX_CONCURRENCY, model.most_inside
    assert poll(lambda: guard.rpcs.used == 0, bool, interval=0.02), guard.rpcs.used
    assert guard.rpcs.waiting == 0 and guard.inflight.used == 0, (guard.rpcs.waiting, guard.inflight.used)
