"""The limit: the same Python server stack answering with nothing behind it.

``python -m bench.limit --http_port P --grpc_port Q`` serves, in one process and one asyncio event
loop as KServe's ``ModelServer`` does (``asyncio.run``, uvicorn's ``Server.serve`` with httptools,
a ``grpc.aio`` server with KServe's default of 4 threads and its message-size options):

- a bare ASGI app under uvicorn: every ``POST`` has its body read and is answered with one fixed
  JSON body (a one-row V1 answer), every ``GET`` with ``{}`` (the bench's readiness probe);
- a bare ``grpc.aio`` ``GRPCInferenceService`` servicer whose ``ModelInfer`` answers one fixed
  ``ModelInferResponse`` (one FP64 value), the request parsed by the generated stub as usual.

No framework, no routing, no middleware, no interceptor, no log line per request: no server of
ours on this stack can answer faster, so ours ÷ limit says how close to the stack's own cost we are.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent import futures
from typing import Any

import uvicorn
from grpc import aio
from kserve.constants.constants import MAX_GRPC_MESSAGE_LENGTH
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from common.config import DEFAULT_MODEL_NAME

#: The fixed answers (a one-row prediction), written once.
BODY = b'{"predictions":[0.0]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
_READY = [(b"content-type", b"application/json"), (b"content-length", b"2")]
#: KServe's default gRPC message limits (``--grpc_max_send/receive_message_length``).
GRPC_MAX_MESSAGE = MAX_GRPC_MESSAGE_LENGTH


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI app: the body read whole, the fixed answer."""
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": BODY})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _READY})
    await send({"type": "http.response.body", "body": b"{}"})


class ConstantServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``ModelInfer`` answers one prebuilt response; the readiness RPCs say yes."""

    def __init__(self, model_name: str) -> None:
        self.response = pb.ModelInferResponse(
            model_name=model_name,
            id="limit",
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name="predictions", datatype="FP64", shape=[1], contents=pb.InferTensorContents(fp64_contents=[0.0])
                )
            ],
        )

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        return self.response

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        return pb.ModelReadyResponse(ready=True)


async def serve(http_port: int, grpc_port: int, model_name: str, max_threads: int = 4) -> None:
    """Both servers on this event loop until cancelled."""
    server = aio.server(
        futures.ThreadPoolExecutor(max_workers=max_threads),
        options=[
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(ConstantServicer(model_name), server)
    server.add_insecure_port(f"[::]:{grpc_port}")
    await server.start()
    config = uvicorn.Config(app, host="0.0.0.0", port=http_port, log_config=None, access_log=False, ws="none")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await server.stop(1)


def main() -> None:
    """``python -m bench.limit --http_port P --grpc_port Q``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    parser.add_argument("--model_name", default=DEFAULT_MODEL_NAME)
    args = parser.parse_args()
    asyncio.run(serve(args.http_port, args.grpc_port, args.model_name))


if __name__ == "__main__":
    main()
