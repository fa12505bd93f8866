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

import asyncio
import threading
from collections import deque


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


class QueuedSlots:
    """``limit`` slots, and room for ``max_waiting`` more callers to wait for one, first come first served.

    The gRPC calls in flight (``--max_concurrency``) and those taken but waiting for a slot
    (``--max_queued_rpcs``): a burst a little over the cap waits its turn instead of being refused, and
    only a caller that finds the queue full is refused. Used from one event loop (grpc.aio's), so no lock:
    :meth:`release` hands the slot straight to the oldest waiter, so ``used`` stays at ``limit`` while
    anyone waits and a newcomer cannot pass them.
    """

    def __init__(self, limit: int, max_waiting: int) -> None:
        self.limit = limit
        self.max_waiting = max_waiting
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot now; False (nothing taken) when all are taken."""
        if self.used < self.limit:
            self.used += 1
            return True
        return False

    def can_wait(self) -> bool:
        """Whether the queue has room for one more caller."""
        return len(self._waiters) < self.max_waiting

    async def wait(self) -> None:
        """Wait for a slot (call only when :meth:`try_acquire` failed and :meth:`can_wait` said yes); the slot is
        held on return. Cancelled while waiting (the caller's deadline, the client gone): out of the queue, and a
        slot handed over in the meantime goes to the next one."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot, then cancelled: pass it on
                self.release()
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter, if any, else to the pool."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.used -= 1
