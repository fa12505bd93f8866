"""``/metrics`` summed over processes when ``--workers`` > 1 (prometheus_client multiprocess mode).

With ``--workers N`` > 1 KServe serves REST from N spawned worker processes (and gRPC from the
parent); each has its own registry, so a scrape answered by one worker would show that worker's
counts only. :func:`prepare` (called before anything imports prometheus_client) points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh private directory under the temp dir, inherited by every
process of the tree and removed when the parent exits. Every process then writes its series to
per-pid mmap files there, and :func:`registry` — what the workers' ``/metrics`` serves — merges
them with :class:`~prometheus_client.multiprocess.MultiProcessCollector`. With one worker none of
this is on: the process's own registry is served as before.

How each series merges:

* counters and histograms (ours and KServe's ``request_*_seconds``): summed over processes,
  dead ones included, so they never go backwards when KServe replaces a worker;
* ``housing_model_info``: ``max`` (every process serves the same bundle and sets 1; a sum would
  count processes);
* drift (``housing_drift_*``): not a per-process gauge at all — each process keeps its window in
  a file here and the scrape scores the union of the live processes' windows
  (:mod:`predictor.observe.drift`), since neither a sum nor a max of per-process PSIs is a PSI.

``process_*`` and ``python_*`` (per-process by nature) are not served with several workers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENV = "PROMETHEUS_MULTIPROC_DIR"
LEGACY_ENV = "prometheus_multiproc_dir"


def prepare(workers: int) -> Path | None:
    """Before prometheus_client is imported: a private metrics directory when ``workers`` > 1.

    The directory is made with ``mkdtemp`` in the temp dir (``TMPDIR``; ``/tmp`` is an emptyDir in
    the chart, so a read-only root filesystem is fine) and removed at the parent's exit. An
    inherited ``PROMETHEUS_MULTIPROC_DIR`` is never reused (it may hold another tree's files).
    """
    os.environ.pop(LEGACY_ENV, None)
    if workers <= 1:
        os.environ.pop(ENV, None)
        return None
    path = Path(tempfile.mkdtemp(prefix="housing-metrics-"))
    os.environ[ENV] = str(path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already (in-process callers): series created from now on share
        values.ValueClass = values.get_value_class()
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # never from a forked child
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def directory() -> Path | None:
    """The shared metrics directory, when this process tree runs in multiprocess mode."""
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    path = os.environ.get(ENV)
    return Path(path) if path else None


_merged: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    """The registry ``/metrics`` serves: all processes' files merged, plus drift (else the default)."""
    global _merged
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from predictor.observe.drift import drift_collector

    path = directory()
    if path is None:
        return REGISTRY
    if _merged is None:
        _merged = CollectorRegistry()
        MultiProcessCollector(_merged, str(path))
        _merged.register(drift_collector())
    return _merged


def mark_dead(pid: int) -> None:
    """Forget a dead process's live-only state (its drift window; live gauges); keep its counts."""
    from prometheus_client import multiprocess

    from predictor.observe.drift import remove_windows_of

    path = directory()
    if path is None:
        return
    multiprocess.mark_process_dead(pid, str(path))
    remove_windows_of(path, pid)
