"""The payload log's queue and writer: a full queue drops and counts, a failed write is counted and logged
once a minute, rows are the values sent (V1 objects, positional rows, V2 tensors, a matrix)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
from prometheus_client import REGISTRY

from predictor.observe.payload_log import PayloadConfig, PayloadLog
from predictor.observe.payload_rows import BODY, Layout, expand, raw_rows, to_table

LAYOUT = Layout.of(["a", "b", "city"], ["city"], drop=["b"])


def _dropped(version: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "housing_payload_rows_dropped_total", {"model_name": "m", "model_version": version, "reason": reason}
    )
    return value or 0.0


def test_a_full_queue_drops_and_counts(tmp_path):
    log = PayloadLog(PayloadConfig(str(tmp_path), flush_seconds=3600, flush_rows=3, max_queue=3), "m", "q1", LAYOUT)
    with log._lock:  # the writer cannot take the queue meanwhile
        for i in range(5):
            log.record(f"r{i}", "v1", {"a": i}, np.array([1.0]), None, 0.001)
        assert _dropped("q1", "queue_full") == 2
    log.close()
    rows = pq.read_table(next(tmp_path.rglob("*.parquet"))).to_pylist()
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2"]


def test_refusals_take_at_most_half_the_queue(tmp_path):
    """A flood of refusals (a client can send them at will) leaves room for answered requests."""
    config = PayloadConfig(str(tmp_path), flush_seconds=3600, flush_rows=4, max_queue=4)
    log = PayloadLog(config, "m", "h1", LAYOUT)
    with log._lock:
        for i in range(5):
            log.refuse(f"x{i}", "v1", 429, "RateLimited: slow down")
        assert _dropped("h1", "queue_full") == 3
        log.record("ok", "v1", {"a": 1, "b": 2, "city": "c"}, np.array([5.0]), None, 0.001)
    log.close()
    rows = pq.read_table(next(tmp_path.rglob("*.parquet"))).to_pylist()
    assert [(r["request_id"], r["status"]) for r in rows] == [("x0", 429), ("x1", 429), ("ok", 200)]
    assert rows[0]["reason"] == "RateLimited: slow down" and rows[0]["a"] is None and rows[0]["prediction"] is None


def test_write_errors_are_counted_and_logged_once(tmp_path, caplog):
    root = tmp_path / "log"
    log = PayloadLog(PayloadConfig(str(root), flush_seconds=3600), "m", "w1", LAYOUT)
    from testkit.poll import poll

    assert poll(lambda: log.reachable, bool, timeout=10)  # the writer found the destination at start
    shutil.rmtree(root)
    root.write_text("now a file")  # every write fails from here on
    with caplog.at_level(logging.WARNING, logger="predictor"):
        for _ in range(3):
            log.record("r", "v1", {"a": 1}, np.array([1.0]), None, 0.001)
            log.flush()
    errors = REGISTRY.get_sample_value("housing_payload_write_errors_total", {"model_name": "m", "model_version": "w1"})
    assert errors == 3 and _dropped("w1", "write_error") == 3
    assert sum("failed" in r.message for r in caplog.records) == 1
    log.close()


def test_sample_zero_logs_nothing(tmp_path):
    log = PayloadLog(PayloadConfig(str(tmp_path), sample=0.0), "m", "s0", LAYOUT)
    log.record("r", "v1", {"a": 1}, np.array([1.0]), None, 0.001)
    log.close()
    assert not list(tmp_path.rglob("*.parquet"))


def test_raw_values_of_every_payload_shape():
    assert raw_rows({"instances": [{"a": 1, "city": "x"}, [2, 9, "y"]]}, LAYOUT, 2) == [(1, "x"), (2, "y")]
    assert raw_rows({"a": 3, "b": 4}, LAYOUT, 1) == [(3, None)]
    v2 = b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},' \
         b' {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["p", "q"]}]}'  # fmt: skip
    assert raw_rows(v2, LAYOUT, 2) == [(1.5, "p"), (2.5, "q")]
    matrix = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [4, 5, 6]]}]}
    assert raw_rows(matrix, LAYOUT, 2) == [(1, 3), (4, 6)]
    assert raw_rows(b"not json", LAYOUT, None) == [(None, None)]


ITEMS = [
    (0.0, "r1", "v1", {"instances": [{"a": "7", "b": 1, "city": 5}, {"a": None}]}, np.array([1.0, 2.0]),
     np.array([[True, False, True], [False, False, False]]), 0.002, 200, None),
    (1.0, "r2", "v1", b'{"instances": [{"a": "x"}]}', None, None, 0.001, 400, "InvalidInput: a: bad"),
]  # fmt: skip


def test_table_types_and_flags_with_a_drop_list():
    table = to_table(ITEMS, LAYOUT, "m", "v")
    assert BODY not in table.column_names and "b" not in table.column_names
    rows = table.to_pylist()
    assert [(r["request_id"], r["row"], r["a"], r["city"]) for r in rows] == [
        ("r1", 0, 7.0, "5"),
        ("r1", 1, None, None),
        ("r2", 0, None, None),
    ]
    assert rows[0]["out_of_range"] == "a,city" and rows[1]["out_of_range"] is None
    assert rows[2]["status"] == 400 and rows[2]["prediction"] is None


def test_without_a_drop_list_the_body_is_kept_and_expanded_on_reading():
    layout = Layout.of(["a", "b", "city"], ["city"])
    table = to_table(ITEMS, layout, "m", "v")
    assert BODY in table.column_names and "a" not in table.column_names
    rows = expand(table).to_pylist()
    assert [(r["row"], r["a"], r["b"], r["city"]) for r in rows] == [(0, 7.0, 1.0, "5"), (1, None, None, None),
                                                                     (0, None, None, None)]  # fmt: skip


def test_a_grpc_request_queued_as_received_is_read_in_the_writer():
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest

    req = ModelInferRequest(model_name="m", id="g1")
    a = req.inputs.add(name="a", datatype="FP64", shape=[1])
    a.contents.fp64_contents.append(2.5)
    b = req.inputs.add(name="b", datatype="FP64", shape=[1])
    b.contents.fp64_contents.append(4.0)
    city = req.inputs.add(name="city", datatype="BYTES", shape=[1])
    city.contents.bytes_contents.append(b"p")
    item = (0.0, "g1", "grpc", req, np.array([3.0]), None, 0.001, 200, None)
    dropped = to_table([item], LAYOUT, "m", "v").to_pylist()
    assert [(r["a"], r["city"]) for r in dropped] == [(2.5, "p")]
    kept = expand(to_table([item], Layout.of(["a", "b", "city"], ["city"]), "m", "v")).to_pylist()
    assert [(r["a"], r["b"], r["city"]) for r in kept] == [(2.5, 4.0, "p")]
