"""The KServe floor: a ``kserve.Model`` that returns a constant, served by the same ModelServer.

``python -m bench.floor --model_name housing --http_port P --grpc_port Q [--access_log B --trace_log B]``
— whatever our predictor achieves is measured against this in the same run; nothing can beat the
framework it runs in, so ours ÷ floor says how much of the budget the model itself spends.

The per-request log lines follow the predictor's flags (:mod:`predictor.observe.request_logs`),
so ours and the floor write the same lines: off, uvicorn's access line, KServe's
``TimingMiddleware`` and latency line, and gRPC's ``LoggingInterceptor`` are left out as ours
leaves them out; on, KServe's stack is untouched.
"""

from __future__ import annotations

import argparse
from concurrent import futures

import kserve
from grpc import aio
from kserve import InferOutput, InferRequest, InferResponse, model_server
from kserve.model_server import parser as kserve_parser
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import TimingMiddleware

from common.config import DEFAULT_MODEL_NAME
from predictor.observe import request_logs


class ConstantModel(kserve.Model):
    """Answers every V1 or V2 request with the constant 0.0 per row."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def load(self) -> bool:
        """Nothing to load."""
        self.ready = True
        return True

    async def predict(self, payload, headers=None):  # noqa: ANN001, ANN201 - kserve signature
        """One 0.0 per instance (V1) or per row of the first input (V2)."""
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].shape[0] if payload.inputs else 1
            out = InferOutput(name="predictions", shape=[rows], datatype="FP64", data=[0.0] * rows)
            return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id)
        instances = payload.get("instances") if isinstance(payload, dict) else None
        return {"predictions": [0.0] * (len(instances) if isinstance(instances, list) else 1)}


class QuietGRPCServer(GRPCServer):
    """KServe's gRPC server without its ``LoggingInterceptor`` (the access log off)."""

    async def start(self, max_workers: int) -> None:
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(ExceptionToStatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


def main() -> None:
    """Serve the constant model with KServe's own ModelServer and flags."""
    parser = argparse.ArgumentParser(parents=[kserve_parser], conflict_handler="resolve")
    parser.add_argument("--model_name", default=DEFAULT_MODEL_NAME)
    request_logs.add_arguments(parser)
    args, _ = parser.parse_known_args()
    logs = request_logs.from_args(args)
    model = ConstantModel(args.model_name)
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        enable_latency_logging=logs.trace and args.enable_latency_logging,
        access_log_format=args.access_log_format,  # KServe's import-time parse takes --access_log for it
    )
    request_logs.apply(logs)
    if not logs.trace:  # KServe's TimingMiddleware out, as the predictor leaves it out
        build = model_server.app.build_middleware_stack

        def build_without_timing():  # noqa: ANN202
            app = model_server.app
            app.user_middleware = [m for m in app.user_middleware if m.cls is not TimingMiddleware]
            return build()

        model_server.app.build_middleware_stack = build_without_timing
    if not logs.access:
        model_server.GRPCServer = QuietGRPCServer
    server.start([model])


if __name__ == "__main__":
    main()
