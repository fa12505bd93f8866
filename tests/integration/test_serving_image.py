"""The serving image (the Dockerfile's ``serving`` target) serves what the in-process model answers.

``scripts/images/build.sh serving`` builds the image (or finds it up to date); podman runs it as the
chart does — uid 10001, read-only root filesystem with only ``/tmp`` writable, no capabilities —
with a bundle made by the real training code mounted read-only at ``/mnt/models`` and its ports
published on 127.0.0.1 only. V1, V2 REST, V2 gRPC and explain answers must equal the same bundle
evaluated in this process. Needs root and podman (skips saying so otherwise); a first build takes
~5 minutes on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from bundle.schema import CATEGORICAL
from common.net import free_port
from predictor.client.v2_request import v2_body
from predictor.core.loaded import LoadedBundle, load_bundle
from predictor.transport.model import HousingModel
from testkit.holdout import holdout, records

pytestmark = [pytest.mark.integration, pytest.mark.images, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ["bash", str(ROOT / "scripts/images/podman.sh")]
NAME = "housing"
UID = 10001  # charts/housing values.yaml podSecurityContext.runAsUser
ROWS = 40


def _podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} … failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def serving_image() -> str:
    """The serving image's reference, built by scripts/images/build.sh (a no-op when up to date)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman): the serving image cannot be built or run")
    if os.geteuid() != 0:
        pytest.skip("scripts/images/build.sh needs root (debootstrap of the base image, rootful podman)")
    built = subprocess.run(
        ["bash", str(ROOT / "scripts/images/build.sh"), "serving"], capture_output=True, text=True, timeout=1700
    )
    assert built.returncode == 0, f"scripts/images/build.sh serving failed:\n{built.stderr[-4000:]}"
    (ref,) = [line.split()[0] for line in built.stdout.splitlines() if "/housing-serving:" in line]
    return ref


@dataclass
class Served:
    """A running serving-image container and the same bundle loaded in this process."""

    container: str
    http: httpx.Client
    grpc: GRPCInferenceServiceStub
    bundle: LoadedBundle
    model: HousingModel
    rows: list[dict]


@pytest.fixture(scope="module")
def serve(serving_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """serve(bundle_dir, dataset, args) -> Served: the image serving a read-only copy of the bundle."""
    started: list[tuple[str, httpx.Client, grpc.Channel]] = []
    cache: dict[tuple[Path, tuple[str, ...]], Served] = {}

    def _serve(bundle_dir: Path, dataset: str, args: tuple[str, ...] = ()) -> Served:
        if (bundle_dir, args) in cache:
            return cache[bundle_dir, args]
        mounted = tmp_path_factory.mktemp("mounted") / "bundle"
        shutil.copytree(bundle_dir, mounted)
        for path in [mounted, *mounted.rglob("*")]:  # readable by the image's user, nothing more
            path.chmod(0o755 if path.is_dir() else 0o644)
        http_port, grpc_port = free_port(), free_port()
        name = f"housing-serving-test-{os.getpid()}-{len(started)}"
        _podman(
            "run", "-d", "--name", name,
            "--user", f"{UID}:{UID}", "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-p", f"127.0.0.1:{http_port}:8080", "-p", f"127.0.0.1:{grpc_port}:8081",
            "-v", f"{mounted}:/mnt/models:ro",
            serving_image, "--model_name", NAME, "--model_dir", "/mnt/models", *args,
        )  # fmt: skip
        http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        started.append((name, http, channel))
        _wait_ready(name, http)
        model = HousingModel(NAME, str(bundle_dir))
        model.load()
        test, features = holdout(dataset)
        served = Served(name, http, GRPCInferenceServiceStub(channel), load_bundle(bundle_dir), model,
                        records(test[features])[:ROWS])  # fmt: skip
        cache[bundle_dir, args] = served
        return served

    yield _serve
    for name, http, channel in started:
        http.close()
        channel.close()
        _podman("rm", "-f", name, check=False)


def _wait_ready(name: str, http: httpx.Client, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http.get(f"/v2/models/{NAME}/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = _podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true" or time.monotonic() > deadline:
            logs = _podman("logs", name, check=False)
            raise AssertionError(f"{name} not ready (running: {state}):\n{(logs.stdout + logs.stderr)[-4000:]}")
        time.sleep(1)


def _expected(served: Served) -> np.ndarray:
    """The in-process predictions of the rows (price units)."""
    X = served.model.decode({"instances": served.rows})[0]
    return served.bundle.to_price(served.bundle.predict_model_scale(X))


def _grpc_request(served: Served) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=NAME, id="image-grpc")
    for f in served.bundle.schema.features:
        values = [row[f.name] for row in served.rows]
        assert None not in values  # gRPC tensors have no null; these holdout rows are complete
        if f.kind == CATEGORICAL:
            tensor = req.inputs.add(name=f.name, datatype="BYTES", shape=[len(values)])
            tensor.contents.bytes_contents.extend(str(v).encode() for v in values)
        else:
            tensor = req.inputs.add(name=f.name, datatype="FP64", shape=[len(values)])
            tensor.contents.fp64_contents.extend(float(v) for v in values)
    return req


@pytest.fixture(scope="module")
def ames(serve, ames_xgb: Path) -> Served:
    return serve(ames_xgb, "ames")


def test_runs_as_uid_10001_on_a_read_only_root(ames: Served) -> None:
    out = _podman("exec", ames.container, "sh", "-c", "id -u; touch /opt/venv/x 2>&1; touch /tmp/x && echo tmp ok")
    lines = out.stdout.splitlines()
    assert lines[0] == str(UID)
    assert "Read-only file system" in lines[1] and lines[2] == "tmp ok", out.stdout


def test_v1_matches_the_in_process_model(ames: Served) -> None:
    r = ames.http.post(f"/v1/models/{NAME}:predict", json={"instances": ames.rows})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], _expected(ames), rtol=1e-9)


def test_v2_rest_matches_the_in_process_model(ames: Served) -> None:
    body = v2_body(ames.rows, names=ames.bundle.schema.names, request_id="image-v2")
    r = ames.http.post(f"/v2/models/{NAME}/infer", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "image-v2" and answer["model_version"] == ames.bundle.manifest.model_version
    np.testing.assert_allclose(answer["outputs"][0]["data"], _expected(ames), rtol=1e-9)


def test_v2_grpc_matches_the_in_process_model(ames: Served) -> None:
    resp = ames.grpc.ModelInfer(_grpc_request(ames), timeout=60)
    out = resp.outputs[0]
    values = list(out.contents.fp64_contents) or np.frombuffer(resp.raw_output_contents[0], dtype=np.float64)
    assert resp.id == "image-grpc" and out.name == "predictions"
    np.testing.assert_allclose(values, _expected(ames), rtol=1e-9)


def test_two_rest_workers_serve_in_the_image(serve, ames_xgb: Path) -> None:
    """``--workers 2`` (chart: predictor.workers): each spawned worker first imported kserve's package,
    hence the Kubernetes client the image does not have — every worker died and was restarted forever."""
    served = serve(ames_xgb, "ames", ("--workers", "2"))
    for _ in range(8):
        answer = served.http.post(f"/v1/models/{NAME}:predict", json={"instances": served.rows})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"], _expected(served), rtol=1e-6)

    def read_logs() -> str:
        printed = _podman("logs", served.container)
        return printed.stdout + printed.stderr

    # the first worker up answers ready: on a loaded machine the second may still be importing
    deadline = time.monotonic() + 120
    while read_logs().count("serving housing with the guard") < 2 and time.monotonic() < deadline:
        time.sleep(1)
    logs = read_logs()
    assert logs.count("serving housing with the guard") == 2, logs[-3000:]
    assert "died" not in logs and "No module named" not in logs, logs[-3000:]


def test_client_errors_are_400_naming_the_field(ames: Served) -> None:
    row = dict(ames.rows[0])
    row.pop(ames.bundle.schema.names[0])
    r = ames.http.post(f"/v1/models/{NAME}:predict", json={"instances": [row]})
    assert r.status_code == 400 and ames.bundle.schema.names[0] in r.json()["error"], r.text


def test_metrics_name_the_served_version(ames: Served) -> None:
    text = ames.http.get("/metrics").text
    assert f'model_version="{ames.bundle.manifest.model_version}"' in text


def _explain_matches(served: Served) -> None:
    rows = served.rows[:5]
    # its own connection: a 500 from explain closes the keep-alive one the other tests share
    r = httpx.post(served.http.base_url.join(f"/v1/models/{NAME}:explain"), json={"instances": rows}, timeout=60)
    assert r.status_code == 200, r.text
    got, want = r.json(), served.model.explain({"instances": rows})
    assert got["scale"] == want["scale"]
    for g, w in zip(got["explanations"], want["explanations"], strict=True):
        assert list(g["contributions"]) == list(w["contributions"])
        np.testing.assert_allclose(
            [g["prediction"], g["price"], g["bias"], *g["contributions"].values()],
            [w["prediction"], w["price"], w["bias"], *w["contributions"].values()],
            rtol=1e-7,
            atol=1e-9,
        )


def test_explain_forest_matches_the_in_process_model(serve, boston_forest: Path) -> None:
    _explain_matches(serve(boston_forest, "boston"))


def test_explain_linear_matches_the_in_process_model(serve, ames_linear: Path) -> None:
    _explain_matches(serve(ames_linear, "ames"))


def test_explain_xgboost_matches_the_in_process_model(ames: Served) -> None:
    _explain_matches(ames)


def test_the_image_carries_its_code_and_standard_library_compiled(serving_image: str) -> None:
    """Read-only at run time: a module without its .pyc here is compiled again at every start.

    The standard library, our code and the installed packages (uv installs them, byte-compiled).
    """
    check = (
        "import importlib.util, os, json, asyncio, email.message, predictor.transport.model, bundle.manifest\n"
        "import bundle._ubjson, kserve.model, fastapi, numpy, grpc\n"
        "mods = (json, asyncio, email.message, predictor.transport.model, bundle.manifest, kserve.model, fastapi,\n"
        "        numpy, grpc)\n"
        "print([m.__name__ for m in mods if not os.path.exists(importlib.util.cache_from_source(m.__file__))])"
    )
    out = _podman("run", "--rm", "--read-only", "--user", f"{UID}:{UID}", "--entrypoint", "python", serving_image,
                  "-c", check)  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_the_bench_times_starts_in_the_image_and_removes_its_container(serving_image: str, ames_xgb: Path) -> None:
    from bench import images

    res = images.ImageResult(references={"serving": serving_image})
    images.measure_starts(res, ames_xgb, 2)
    assert len(res.start_s) == 2 and all(0 < s < 120 for s in res.start_s)
    assert all(c > 0 for c in res.cpu_s)
    names = _podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert f"housing-bench-start-{os.getpid()}" not in names
