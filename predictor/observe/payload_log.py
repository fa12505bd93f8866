"""Payload logging: every answered request (or a sample) as Parquet rows, written off the request path.

``--payload_log_uri`` (a directory or ``s3://bucket/prefix``) turns it on. A request costs one
sampled append to a bounded queue (:meth:`PayloadLog.record`); a background thread takes the queue
every ``flush_seconds`` or when ``flush_rows`` requests wait, turns it into one Arrow table
(:mod:`predictor.observe.payload_rows`) and writes it as a Parquet file under

    <uri>/model_version=<version>/date=<YYYY-MM-DD>/part-<unix ms>-<pid>-<random>.parquet

so every process (``--workers N``) writes its own files and nothing is ever appended to. What is
left is written at exit (SIGTERM included: KServe's server returns and the interpreter's exit hooks
run, in REST worker processes too).

It never blocks or fails a request: a full queue drops the request's rows and counts them in
``housing_payload_rows_dropped_total`` (by ``reason``: ``queue_full``, ``unreachable``,
``write_error``); a failed write counts ``housing_payload_write_errors_total`` and is logged at most
once a minute. A destination unreachable at start is said once; its rows are counted as dropped
until it answers (it is asked again at every flush).
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.series import LABELS, PAYLOAD_DROPPED, PAYLOAD_WRITE_ERRORS, PAYLOAD_WRITTEN, REASON
from predictor.observe.payload_rows import (
    BODY,
    LATENCY_MS,
    PREDICTION,
    REQUEST_ID,
    TIME,
    Layout,
    columns_to_table,
    to_table,
    utc_date,
)

#: Microseconds in a day: the date partition of a row is its ``time`` column's day.
DAY_US = 86_400_000_000

log = logging.getLogger("predictor")

#: Seconds between "write failed" log lines.
ERROR_LOG_EVERY = 60.0

#: Set while a payload log runs in this process: the data plane then keeps each V1 body's bytes
#: (:func:`keep_body`) so the log queues them instead of re-encoding the parsed request.
capturing = False
#: The bodies of the requests in progress, by their parsed document's ``id``: (document, body as
#: received). A plain dict, not a ``ContextVar``: setting a context variable gives the request's task
#: a new context (its HAMT nodes, GC-tracked) on every request. The data plane sets and drops the
#: entry around the model call (:func:`keep_body`, :func:`drop_body`); ``id`` is unique while the
#: document lives, and the identity check guards against a stale entry.
_received: dict[int, tuple[Any, bytes]] = {}
#: Entries beyond this are a leak (a request that never reached :func:`drop_body`): cleared.
_RECEIVED_MAX = 4096


def keep_body(document: Any, body: bytes) -> None:
    """Remember that ``document`` was parsed from ``body`` (the data plane, for V1 JSON bodies)."""
    if len(_received) >= _RECEIVED_MAX:
        _received.clear()
    _received[id(document)] = (document, body)


def drop_body(document: Any) -> None:
    """Forget ``document``'s body (the data plane, once the model call is over)."""
    _received.pop(id(document), None)


def received_body(document: Any) -> bytes | None:
    """The bytes ``document`` was parsed from in this request, if the data plane kept them."""
    kept = _received.get(id(document))
    return kept[1] if kept is not None and kept[0] is document else None


_counters: dict[str, Any] = {}


def _counter(name: str, doc: str, labels: tuple[str, ...]) -> Any:
    from prometheus_client import Counter

    if name not in _counters:
        _counters[name] = Counter(name, doc, labels)
    return _counters[name]


@dataclass(frozen=True)
class PayloadConfig:
    """``--payload_log_*``: where, how much, what to leave out, and how the writer batches."""

    uri: str
    sample: float = 1.0
    drop: tuple[str, ...] = ()
    flush_seconds: float = 10.0
    flush_rows: int = 5000
    max_queue: int = 50_000

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError("--payload_log_uri: empty")
        if not 0.0 <= self.sample <= 1.0:
            raise ValueError(f"--payload_log_sample: must be between 0 and 1, got {self.sample}")
        if self.flush_seconds <= 0 or self.flush_rows < 1 or self.max_queue < self.flush_rows:
            raise ValueError(
                "--payload_log_flush_seconds must be > 0, --payload_log_flush_rows ≥ 1 and ≤ the queue "
                f"(got {self.flush_seconds}, {self.flush_rows}, queue {self.max_queue})"
            )


class DirectorySink:
    """Files under a local directory, each written to a temporary name and renamed (never half a file)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://"))

    def prepare(self) -> None:
        """Nothing to set up ahead of the first write."""

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise PermissionError(f"{self.root}: not writable")

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


class S3Sink:
    """Objects under ``s3://bucket/prefix`` (endpoint and credentials from the environment, as for bundles)."""

    def __init__(self, uri: str) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"--payload_log_uri: no bucket in {uri!r}")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from common.config import s3_client

            self._client = s3_client(connect_timeout=3, read_timeout=20)
        return self._client

    def prepare(self) -> None:
        """Build the client now (no request is made): boto3's imports, ~5·10^4 objects, belong to start-up."""
        try:
            self.client()
        except Exception:  # noqa: BLE001 - the writer's check says what is wrong
            self._client = None

    def check(self) -> None:
        self.client().head_bucket(Bucket=self.bucket)

    def write(self, key: str, data: bytes) -> None:
        name = f"{self.prefix}/{key}" if self.prefix else key
        self.client().put_object(Bucket=self.bucket, Key=name, Body=data)


def sink_for(uri: str) -> DirectorySink | S3Sink:
    """The destination of ``uri``: ``s3://bucket/prefix``, ``file://path`` or a path."""
    return S3Sink(uri) if uri.startswith("s3://") else DirectorySink(uri)


#: The queue's columns (:data:`predictor.observe.payload_rows.Logged`'s fields), in the order
#: :meth:`PayloadLog.record` appends to them; the last one is appended last.
N_FIELDS = 9


def _rows(columns: list[list[Any]]) -> int:
    """Rows the queued requests would have written (a refused request is one)."""
    return sum(1 if p is None else len(p) for p in columns[4])


def encode(table: Any) -> bytes:
    """A table as Parquet bytes (zstd). Dictionary encoding only where values repeat: the body, the
    request id, the time, the latency and the prediction are nearly unique per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    unique = {BODY, REQUEST_ID, TIME, LATENCY_MS, PREDICTION}
    out = pa.BufferOutputStream()
    dictionary = [name for name in table.column_names if name not in unique]
    pq.write_table(table, out, compression="zstd", compression_level=1, use_dictionary=dictionary)
    return out.getvalue().to_pybytes()


def _reason(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


class PayloadLog:
    """The queue and the writer thread of one process for one model version."""

    def __init__(
        self, config: PayloadConfig, model_name: str, model_version: str, layout: Layout, prepare: bool = True
    ) -> None:
        """Start the writer; ``prepare`` (see :meth:`_prepare`) now, else first thing in the writer thread."""
        self.config = config
        self.model_name, self.model_version, self.layout = model_name, model_version, layout
        self.sink = sink_for(config.uri)
        self._prepared = False
        if prepare:
            self._prepare()
        # the queue: one list per field, appended to by the request path (the event loop's thread) in
        # field order, taken by the writer (:meth:`_take`): no tuple per request, so nothing the
        # garbage collector tracks (a tracked object per request made it collect ~8× as often)
        self._columns: tuple[list[Any], ...] = tuple([] for _ in range(N_FIELDS))
        self._append = tuple(column.append for column in self._columns)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread's, or the exit hook's)
        self._seq = 0
        self._last_error_log = -ERROR_LOG_EVERY
        self.reachable: bool | None = None  # None until the writer has asked
        self._said_unreachable = False
        labels = (model_name, model_version)
        self._dropped = _counter(PAYLOAD_DROPPED, "Payload log rows not written.", (*LABELS, REASON))
        self._drop_full = self._dropped.labels(*labels, "queue_full")
        self._drop_unreachable = self._dropped.labels(*labels, "unreachable")
        self._drop_write = self._dropped.labels(*labels, "write_error")
        self._errors = _counter(PAYLOAD_WRITE_ERRORS, "Payload log writes that failed.", LABELS).labels(*labels)
        self._written = _counter(PAYLOAD_WRITTEN, "Payload log rows written.", LABELS).labels(*labels)
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
        self._thread.start()
        global capturing
        capturing = True
        atexit.register(self.close)
        try:  # REST worker processes end through multiprocessing, which runs its finalizers, not atexit
            from multiprocessing import util

            util.Finalize(self, self.close, exitpriority=10)
        except ImportError:  # pragma: no cover
            pass

    # -- the request path ----------------------------------------------------------------------
    def record(
        self,
        request_id: str,
        protocol: str,
        payload: Any,
        prices: Any,
        mask: Any,
        latency: float,
        status: int = 200,
        reason: str | None = None,
    ) -> None:
        """Queue one request (or count it dropped); never raises, never waits."""
        sample = self.config.sample
        if sample < 1.0 and random.random() >= sample:
            return
        rows = 1 if prices is None else len(prices)
        if self.reachable is False:
            self._drop_unreachable.inc(rows)
            return
        last = self._columns[-1]
        if len(last) >= self.config.max_queue:
            self._drop_full.inc(rows)
            return
        a_time, a_id, a_protocol, a_payload, a_prices, a_mask, a_latency, a_status, a_reason = self._append
        a_time(time.time())
        a_id(request_id)
        a_protocol(protocol)
        a_payload(payload)
        a_prices(prices)
        a_mask(mask)
        a_latency(latency)
        a_status(status)
        a_reason(reason)
        if len(last) == self.config.flush_rows:
            self._wake.set()

    def refuse(self, request_id: str, protocol: str, status: int, reason: str) -> None:
        """Queue a request refused before the model saw it (no body, no prediction); never raises, never waits.

        Refusals may fill at most half the queue: a client can send them at will (401, 429), and a
        flood of them must not crowd out the rows of answered requests (beyond half, they are counted
        as dropped, ``queue_full``)."""
        sample = self.config.sample
        if sample < 1.0 and random.random() >= sample:
            return
        if self.reachable is False:
            self._drop_unreachable.inc()
            return
        last = self._columns[-1]
        if len(last) >= self.config.max_queue // 2:
            self._drop_full.inc()
            return
        # the nine appends below are record's on purpose (``duplicates`` lists the pair): record runs on
        # every answered request, and a helper both called would add a nine-argument call to it (~0.1 µs
        # here); what differs is above (half the queue, one row) and in the values (no body, no answer)
        a_time, a_id, a_protocol, a_payload, a_prices, a_mask, a_latency, a_status, a_reason = self._append
        a_time(time.time())
        a_id(request_id)
        a_protocol(protocol)
        a_payload(None)
        a_prices(None)
        a_mask(None)
        a_latency(0.0)
        a_status(status)
        a_reason(reason)
        if len(last) == self.config.flush_rows:
            self._wake.set()

    # -- the writer ------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Import what the first write would import lazily (pyarrow, the pandas it looks for, zstd;
        boto3 and its client): done by the writer thread while serving, it took seconds of CPU, and
        its ~10^5 objects came after the server's ``gc.freeze()``, scanned by every full collection.
        (A REST worker process prepares in its writer thread: its parent declares it hung when it
        does not answer within 5 s of starting.)"""
        self._prepared = True
        try:
            encode(to_table([], self.layout, self.model_name, self.model_version))
            self.sink.prepare()
        except Exception as exc:  # noqa: BLE001 - the first write says what is wrong
            log.warning("payload log: preparing the writer failed: %s", _reason(exc))

    def _run(self) -> None:
        if not self._prepared:
            self._prepare()
        self._check()
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_seconds)
            self._wake.clear()
            self.flush()

    def _check(self) -> None:
        try:
            self.sink.check()
        except Exception as exc:  # noqa: BLE001 - any failure means: not there
            if not self._said_unreachable:
                log.warning(
                    "payload log: %s is unreachable (%s); serving without it, rows are counted in %s_total "
                    "until it answers",
                    self.config.uri,
                    _reason(exc),
                    PAYLOAD_DROPPED,
                )
                self._said_unreachable = True
            self.reachable = False
            return
        if self.reachable is False:
            log.warning("payload log: %s answers now; writing rows again", self.config.uri)
        self.reachable = True

    def flush(self) -> None:
        """Write what is queued (one file per date); a failed write is counted, its rows dropped."""
        with self._lock:
            if self.reachable is not True:
                self._check()
            columns = self._take()
            if columns is None:
                return
            if not self.reachable:
                self._drop_unreachable.inc(_rows(columns))
                return
            days = [int(t * 1e6) // DAY_US for t in columns[0]]  # the day of each row's time column
            if min(days) == max(days):
                self._write(utc_date(days[0] * 86400), columns)
                return
            by_day: dict[int, list[int]] = {}
            for i, day in enumerate(days):
                by_day.setdefault(day, []).append(i)
            for day, index in by_day.items():
                self._write(utc_date(day * 86400), [[column[i] for i in index] for column in columns])

    def _take(self) -> list[list[Any]] | None:
        """The queued requests, one list per field, taken off the queue; None when there are none.

        The request path may be appending meanwhile (one field at a time, in order, the last field
        last): the first ``len(last field)`` entries of every list are complete requests, and each
        slice and ``del`` is one step under the interpreter lock, so a request being appended stays
        whole for the next take."""
        columns = self._columns
        n = len(columns[-1])
        if not n:
            return None
        taken = []
        for column in columns:
            taken.append(column[:n])
            del column[:n]
        return taken

    def _write(self, date: str, columns: list[list[Any]]) -> None:
        try:
            table = columns_to_table(columns, self.layout, self.model_name, self.model_version)
            data = encode(table)
            self._seq += 1
            key = (
                f"model_version={self.model_version}/date={date}/"
                f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._seq:05d}-{uuid.uuid4().hex[:8]}.parquet"
            )
            self.sink.write(key, data)
        except Exception as exc:  # noqa: BLE001 - a write error must never reach a request
            self._errors.inc()
            self._drop_write.inc(_rows(columns))
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_EVERY:
                self._last_error_log = now
                uri, why = self.config.uri, _reason(exc)
                log.warning("payload log: writing %d requests to %s failed: %s", len(columns[0]), uri, why)
            return
        self._written.inc(table.num_rows)

    def close(self) -> None:
        """Stop the writer and write what is left (idempotent; at exit)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.flush()
