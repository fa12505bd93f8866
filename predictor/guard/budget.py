"""A budget of request-body bytes in flight, so that parsing never takes more memory than the pod has.

Parsed JSON is much larger than its text: ``{"instances": [{}, {}, …]}`` and ``[[], [], …]`` take
~31× their size as Python objects, numbers ~15× (measured on a predictor: a 16 MiB body of
empty objects raised the peak RSS by 515 MB; ``tests/integration/test_predictor_hardening.py``
prints it). A body is charged its ``Content-Length`` (a chunked body, the largest allowed) from
before it is read until its answer is sent; a request that would take the total over the budget
is refused at once (503 / RESOURCE_EXHAUSTED, retry after a second) instead of growing the
process towards the OOM killer. One budget per process: it is shared by REST and gRPC there.
"""

from __future__ import annotations

import threading


class InflightBytes:
    """Bytes of request bodies being read, parsed or answered, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()  # gRPC's thread pool and the event loop may both charge it

    def try_acquire(self, size: int) -> bool:
        """Charge ``size`` bytes; False (nothing charged) when that would exceed the limit."""
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def release(self, size: int) -> None:
        """Give back what :meth:`try_acquire` charged."""
        with self._lock:
            self.used -= size
