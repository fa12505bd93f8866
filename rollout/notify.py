"""Rollout notifications: a JSON POST per rollout event to one URL, never in the rollout's way.

:class:`Notifier` queues each event and a single background thread posts them in order (so a
receiver sees start, steps, pause, promote/rollback as they happened), retrying each a few times
with a growing pause. :meth:`Notifier.send` never blocks and never raises: an endpoint that is down,
slow or refusing only makes the counters grow (``failures``: events given up after every retry,
``dropped``: events that found the queue full), and a warning is logged at most once a minute.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

import httpx

log = logging.getLogger("housing.rollout.notify")

#: events waiting to be posted before new ones are dropped (and counted)
QUEUE_SIZE = 1000
#: seconds between two warnings about failed posts
WARN_EVERY = 60.0


class Notifier:
    """POST each event as JSON to ``url`` from a background thread, in order, with retries."""

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, backoff: float = 0.5) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.sent = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._warned_at = float("-inf")
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._loop, name="rollout-notify", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for posting; returns at once (a full queue drops it and counts it)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            self._warn(f"queue full ({QUEUE_SIZE} events waiting)")

    def close(self, timeout: float = 10.0) -> None:
        """Post what is queued (for up to ``timeout`` s), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def counts(self) -> dict[str, Any]:
        """What happened so far: sent, failures, dropped, the last error."""
        return {"sent": self.sent, "failures": self.failures, "dropped": self.dropped, "last_error": self.last_error}

    # -- the thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                event = self._queue.get()
                if event is None:
                    return
                self._post(client, event)

    def _post(self, client: httpx.Client, event: dict[str, Any]) -> None:
        body = json.dumps(event, default=str)
        headers = {"Content-Type": "application/json"}
        for attempt in range(self.retries + 1):
            try:
                response = client.post(self.url, content=body, headers=headers)
                if response.status_code < 400:
                    self.sent += 1
                    return
                self.last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        self.failures += 1
        self._warn(f"gave up on a {event.get('event', '?')} event")

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "notify %s: %s; %d failed, %d dropped so far (last error: %s)",
                self.url,
                what,
                self.failures,
                self.dropped,
                self.last_error,
            )
