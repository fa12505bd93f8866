"""Wait for a condition with a deadline instead of sleeping a guessed time before reading."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``probe`` until ``done(result)`` holds or ``timeout`` seconds pass; return the last result.

    The caller asserts on what comes back, so a timeout fails with the values actually seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
