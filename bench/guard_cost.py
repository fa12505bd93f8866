"""What the guard costs per REST request, in process: ``python -m bench.guard_cost``.

Calls the ASGI app chain with a one-row V1 request's scope and a trivial inner app: no
middleware, the middleware with keys and limits off (only the body-size check), and with both
on (a key looked up and compared, a bucket taken). Every request also charges the body budget, has its
body read by the middleware (within --body_timeout_seconds) and takes a processing slot. Prints µs per
request (median of 5 runs).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from predictor.guard.policy import Guard, GuardConfig
from predictor.transport.rest_middleware import GuardMiddleware

N = 20_000


async def _inner(scope, receive, send) -> None:  # noqa: ANN001
    await receive()  # the app reads the body, as KServe's routes do


_MESSAGE = {"type": "http.request", "body": b"x" * 212, "more_body": False}


async def _receive() -> dict:
    return _MESSAGE


def _scope(key: str | None) -> dict:
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"), (b"content-length", b"212")]
    if key:
        headers.append((b"x-api-key", key.encode()))
    return {"type": "http", "method": "POST", "path": "/v1/models/housing:predict", "headers": headers,
            "client": ("127.0.0.1", 5555)}  # fmt: skip


def _per_request_us(app, scope: dict) -> float:  # noqa: ANN001
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(N):
            await app(scope, _receive, None)
        return (time.perf_counter() - start) / N * 1e6

    return statistics.median(asyncio.run(run()) for _ in range(5))


def main() -> None:
    """Print the three figures."""
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        keys.write_text("bench-key\n")
        off = GuardMiddleware(_inner, Guard(GuardConfig()), lambda p, r: None)
        on = GuardMiddleware(
            _inner, Guard(GuardConfig(api_keys_file=str(keys), rate_limit=1e9, rate_burst=1e9)), lambda p, r: None
        )
        base = _per_request_us(_inner, _scope(None))
        print(f"no middleware:            {base:.2f} µs/request")
        print(f"guard off (body limit):   {_per_request_us(off, _scope(None)):.2f} µs/request")
        print(f"keys + rate limit on:     {_per_request_us(on, _scope('bench-key')):.2f} µs/request")


if __name__ == "__main__":
    main()
