"""gRPC load generator (run as a child process): ``python -m bench.grpc_client TARGET REQ SECONDS CONC``.

Sends the serialized ``ModelInferRequest`` in file REQ over CONC concurrent asyncio callers for
SECONDS and prints one JSON line with the same fields as :class:`bench.loadgen.LoadResult`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc


async def _main(target: str, request: pb.ModelInferRequest, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=10)
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "requests": len(latencies) + errors,
        "errors": errors,
    }


def main() -> None:
    """Entry point for the child process."""
    target, path, seconds, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    request = pb.ModelInferRequest()
    with open(path, "rb") as fh:
        request.ParseFromString(fh.read())
    print(json.dumps(asyncio.run(_main(target, request, seconds, concurrency))))


if __name__ == "__main__":
    main()
