"""Per-client token buckets: the pod protects itself (a gateway limits cluster-wide).

Each client (its API key's :func:`~predictor.guard.auth.client_id`, else its address) has a bucket of
``burst`` tokens refilled at ``rate`` per second; a request takes one token or is refused with
the seconds until one is back (``Retry-After``). The table of buckets is bounded: past
``max_clients`` the least recently seen client is forgotten (it starts again with a full bucket).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    """``take(client)`` → 0.0 when allowed, else the seconds to wait."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate: must be > 0 requests per second, got {rate}")
        burst = rate if burst is None else burst
        if not burst >= 1:
            raise ValueError(f"burst: must be >= 1 request, got {burst}")
        if max_clients < 1:
            raise ValueError(f"max_clients: must be >= 1, got {max_clients}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # client -> [tokens, last refill]
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Take one token for ``client``; 0.0 if it had one, else the seconds until it will."""
        with self._lock:
            bucket = self._refilled(client)
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate

    def wait(self, client: str) -> float:
        """Like :meth:`take` without taking: 0.0 if ``client`` has a token now, else the seconds until it will."""
        with self._lock:
            tokens = self._refilled(client)[0]
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _refilled(self, client: str) -> list[float]:
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
            bucket = self._buckets[client] = [self.burst, now]
        else:
            self._buckets.move_to_end(client)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
