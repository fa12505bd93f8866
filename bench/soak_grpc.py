"""Paced gRPC load for the soak (a child process): ``python -m bench.soak_grpc TARGET GOOD BAD RATE SECONDS WINDOW``.

Sends serialized ``ModelInferRequest`` files at RATE per second (every fifth one the bad one)
for SECONDS, open loop; prints one JSON line: per WINDOW seconds the status codes seen, p99, how late calls
left against their schedule and how late this process's own event loop woke (both small: the client kept
up, so a long p99 is the server's).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter

import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

BAD_EVERY = 5
TICK = 0.05  # seconds between this client's loop-lag samples


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def _load(path: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest()
    with open(path, "rb") as fh:
        request.ParseFromString(fh.read())
    return request


async def _main(target: str, good: pb.ModelInferRequest, bad: pb.ModelInferRequest, rate: float, seconds: float,
                window: float) -> dict:  # fmt: skip
    n_windows = max(1, int(round(seconds / window)))
    statuses = [Counter() for _ in range(n_windows)]
    latencies: list[list[float]] = [[] for _ in range(n_windows)]
    send_lag: list[list[float]] = [[] for _ in range(n_windows)]  # ms a call started after its slot
    loop_lag: list[list[float]] = [[] for _ in range(n_windows)]  # ms this process's loop overslept
    expected = {"good": Counter(), "bad": Counter()}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        began = time.perf_counter()
        tasks: set[asyncio.Task] = set()

        async def ticker() -> None:  # this client's own event-loop lag: a slow client is not a slow server
            while True:
                before = time.perf_counter()
                await asyncio.sleep(TICK)
                now = time.perf_counter()
                loop_lag[min(int((now - began) / window), n_windows - 1)].append((now - before - TICK) * 1000)

        tick = asyncio.create_task(ticker())

        async def one(k: int, w: int, at: float) -> None:
            kind = "bad" if k % BAD_EVERY == 0 else "good"
            start = time.perf_counter()
            send_lag[w].append((start - at) * 1000)
            try:
                await stub.ModelInfer(bad if kind == "bad" else good, timeout=10)
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            statuses[w][code] += 1
            expected[kind][code] += 1
            latencies[w].append((time.perf_counter() - start) * 1000)

        k = 0
        while True:
            at = began + k / rate
            if at - began >= seconds:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            w = min(int((at - began) / window), n_windows - 1)
            task = asyncio.create_task(one(k, w, at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        await asyncio.gather(*tasks)
        tick.cancel()
    cpu = os.times()
    return {
        "sent": k,
        "cpu_s": cpu.user + cpu.system,
        "by_kind": {kind: dict(c) for kind, c in expected.items()},
        "windows": [
            {
                "statuses": dict(s),
                "p99_ms": _p99(lat),
                "send_lag_p99_ms": _p99(sl),
                "loop_lag_p99_ms": _p99(ll),
                "loop_lag_max_ms": max(ll, default=float("nan")),
            }
            for s, lat, sl, ll in zip(statuses, latencies, send_lag, loop_lag, strict=True)
        ],
    }


def main() -> None:
    """Entry point for the child process."""
    target, good, bad = sys.argv[1], _load(sys.argv[2]), _load(sys.argv[3])
    rate, seconds, window = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    print(json.dumps(asyncio.run(_main(target, good, bad, rate, seconds, window))))


if __name__ == "__main__":
    main()
