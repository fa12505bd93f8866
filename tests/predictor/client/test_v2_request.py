"""The one V2 request builder: columns, datatypes, order, id and parameters."""

from __future__ import annotations

from predictor.client.v2_request import v2_body, v2_datatype


def test_datatypes_follow_the_values() -> None:
    assert v2_datatype(["a", 1]) == "BYTES"
    assert v2_datatype([1, 2]) == "INT64"
    assert v2_datatype([1, 2.5]) == "FP64"
    assert v2_datatype([True, 1]) == "FP64"
    assert v2_datatype([None, 1]) == "FP64"


def test_body_has_one_tensor_per_feature_in_the_given_order() -> None:
    rows = [{"a": 1, "b": "x", "c": 2}, {"a": 3, "b": "y", "c": 2.5}]
    body = v2_body(rows, names=["c", "b", "a"], request_id="r1", parameters={"content_type": "pd"})
    assert body == {
        "id": "r1",
        "inputs": [
            {"name": "c", "shape": [2], "datatype": "FP64", "data": [2.0, 2.5]},
            {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]},
            {"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 3]},
        ],
        "parameters": {"content_type": "pd"},
    }


def test_missing_features_are_sent_as_null_and_names_default_to_the_rows() -> None:
    body = v2_body([{"a": 1.5}, {"b": "x"}])
    assert [t["name"] for t in body["inputs"]] == ["a", "b"]
    assert body["inputs"][0]["data"] == [1.5, None] and body["inputs"][1]["data"] == [None, "x"]
    assert "id" not in body and "parameters" not in body
