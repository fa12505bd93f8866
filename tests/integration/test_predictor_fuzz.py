"""Property test: malformed and extreme payloads never make the predictor answer 5xx."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from predictor.core.loaded import load_bundle
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"


@pytest.fixture(scope="module")
def server(ames_xgb):
    proc = start_predictor(ames_xgb, NAME, ["--max_batch_size", "50"])
    client = httpx.Client(base_url=proc.http_url, timeout=30)
    yield client, load_bundle(ames_xgb), proc
    client.close()
    assert proc.alive(), proc.log()[-3000:]
    proc.stop()


@pytest.fixture(scope="module")
def grpc_stub(server):
    import grpc
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    channel = grpc.insecure_channel(server[2].grpc_target)
    yield GRPCInferenceServiceStub(channel)
    channel.close()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0]),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _feature_names(bundle) -> list[str]:
    return bundle.schema.names


@st.composite
def v1_bodies(draw, names):
    """Mostly-valid instances with some features removed, renamed or replaced by junk."""
    base = {n: draw(scalars) for n in draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))}
    if draw(st.booleans()):
        base.update({draw(st.text(max_size=8)): draw(json_values)})
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return base
    if shape == 1:
        return {"instances": [base] * draw(st.integers(0, 60))}
    if shape == 2:
        return {"instances": [list(base.values())]}
    if shape == 3:
        return {"instances": draw(json_values)}
    if shape == 4:
        return draw(json_values)
    return {"instances": [base, draw(json_values)]}


@st.composite
def v2_bodies(draw, names):
    inputs = []
    for name in draw(st.lists(st.sampled_from([*names, "X", "junk"]), max_size=6)):
        n = draw(st.integers(0, 3))
        tensor = {
            "name": name,
            "shape": draw(st.sampled_from([[n], [n, 1], [n, len(names)], [-1], [], [n, 2, 2]])),
            "datatype": draw(st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "UINT8", "FP16", "WAT"])),
            "data": draw(st.lists(scalars, max_size=4) | json_values),
        }
        if draw(st.integers(0, 9)) == 0:
            tensor.pop(draw(st.sampled_from(sorted(tensor))))
        inputs.append(tensor)
    body = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=5))
    if draw(st.integers(0, 5)) == 0:
        body["outputs"] = [{"name": draw(st.sampled_from(["predictions", "other"]))}]
    if draw(st.integers(0, 5)) == 0:
        body["parameters"] = draw(st.dictionaries(st.text(max_size=5), scalars, max_size=2))
    return body


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _post(client, path, body):
    content = json.dumps(body, allow_nan=False).encode()
    return client.post(path, content=content, headers={"content-type": "application/json"})


@given(data=st.data())
@SETTINGS
def test_v1_never_5xx(server, data):
    client, bundle, _ = server
    body = data.draw(v1_bodies(_feature_names(bundle)))
    for verb in ("predict", "explain"):
        r = _post(client, f"/v1/models/{NAME}:{verb}", body)
        assert r.status_code < 500, (verb, body, r.text)
        event(f"{verb} {r.status_code}")
        if r.status_code != 200:
            assert r.status_code in (400, 413), r.text  # 413: a batch above --max_batch_size
            assert r.json()["error"]


@given(data=st.data())
@SETTINGS
def test_v2_never_5xx(server, data):
    client, bundle, _ = server
    body = data.draw(v2_bodies(_feature_names(bundle)))
    r = _post(client, f"/v2/models/{NAME}/infer", body)
    assert r.status_code < 500, (body, r.text)
    event(f"v2 {r.status_code}")
    if r.status_code != 200:
        assert r.status_code in (400, 413), r.text  # 413: a batch above --max_batch_size


@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_raw_bytes_never_5xx(server, raw):
    client, _, _ = server
    for path in (f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer", f"/v1/models/{NAME}:explain"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code < 500, (path, raw, r.text)


@st.composite
def grpc_requests(draw, names):
    import numpy as np
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    req = pb.ModelInferRequest(model_name=NAME, id=draw(st.text(max_size=4)))
    raw = draw(st.booleans())
    for name in draw(st.lists(st.sampled_from([*names, "X"]), max_size=5)):
        dt = draw(st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "INT8", "WAT"]))
        shape = draw(st.sampled_from([[1], [2], [1, len(names)], [3, 1], [0]]))
        tensor = req.inputs.add(name=name, datatype=dt, shape=shape)
        if raw:
            req.raw_input_contents.append(draw(st.binary(max_size=64)) or np.zeros(1).tobytes())
        elif dt == "BYTES":
            tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=3)))
        else:
            tensor.contents.fp64_contents.extend(draw(st.lists(st.floats(), max_size=3)))
    return req


@given(data=st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_grpc_never_internal(server, grpc_stub, data):
    import grpc

    _, bundle, _ = server
    req = data.draw(grpc_requests(_feature_names(bundle)))
    try:
        grpc_stub.ModelInfer(req, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (req, exc.code(), exc.details())


@given(data=st.data())
@SETTINGS
def test_extreme_but_valid_rows_are_served_and_flagged(server, data):
    client, bundle, _ = server
    row = {}
    for f in bundle.schema.features:
        if f.kind == "categorical":
            row[f.name] = data.draw(st.text(max_size=10) | st.sampled_from(sorted(f.categories)))
        else:
            row[f.name] = data.draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1))
    r = _post(client, f"/v1/models/{NAME}:predict", {"instances": [row]})
    assert r.status_code == 200, r.text
    (price,) = r.json()["predictions"]
    assert isinstance(price, float) and 0 < price < 1e8
    event("flagged" if "x-housing-out-of-range" in r.headers else "in range")
