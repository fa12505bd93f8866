"""What serving never uses stays unimported (predictor.transport.deferred_imports), and stays usable.

The first test runs the real ``python -m predictor`` with ``PYTHONPROFILEIMPORTTIME=1`` (Python
then logs the modules it imports: every one an ``import`` statement loads, so a package loaded
through ``importlib.import_module`` shows through its submodules, hence the prefix match), serves
V1, V2 REST and V2 gRPC requests, a client error, metadata and ``/metrics``, and reads the log.
The others check, each in a fresh interpreter, that the deferred parts still work for code that
asks for them, and that ``import kserve`` works where the ``kubernetes`` package is absent, as in the
serving image.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from bundle.schema import CATEGORICAL
from predictor.client.v2_request import v2_body
from predictor.core.loaded import load_bundle
from testkit.procs import python_json, start_predictor

NAME = "housing"
#: Never imported by a predictor that serves predictions (explanations of XGBoost bundles aside).
HEAVY = (
    "pandas", "pyarrow", "xgboost", "sklearn", "scipy", "mlflow", "matplotlib", "training", "rollout",
    "kubernetes", "google.auth", "boto3", "botocore", "kserve_storage", "kserve.api", "rich", "pygments",
)  # fmt: skip
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.M)


def _imported(log: str) -> set[str]:
    return set(_IMPORT_LINE.findall(log))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def _row(bundle) -> dict:
    row = {}
    for f in bundle.schema.features:
        if f.kind == CATEGORICAL:
            row[f.name] = next(iter(f.categories))
        else:
            row[f.name] = f.min if f.min is not None else 0.0
    return row


@pytest.mark.integration
def test_a_serving_predictor_imports_none_of_the_heavy_modules(ames_xgb: Path) -> None:
    bundle = load_bundle(ames_xgb)
    row = _row(bundle)
    proc = start_predictor(ames_xgb, NAME, env={"PYTHONPROFILEIMPORTTIME": "1"}, timeout=180)
    try:
        with httpx.Client(base_url=proc.http_url, timeout=30) as client:
            assert client.post(f"/v1/models/{NAME}:predict", json={"instances": [row, row]}).status_code == 200
            v2 = client.post(f"/v2/models/{NAME}/infer", json=v2_body([row], names=bundle.schema.names))
            assert v2.status_code == 200, v2.text
            assert client.post(f"/v1/models/{NAME}:predict", json={"instances": [{"nope": 1}]}).status_code == 400
            assert client.get(f"/v2/models/{NAME}").status_code == 200
            assert "housing_predictions_total" in client.get("/metrics").text
        with grpc.insecure_channel(proc.grpc_target) as channel:
            request = pb.ModelInferRequest(model_name=NAME, id="g-1")
            for f in bundle.schema.features:
                tensor = request.inputs.add(name=f.name, shape=[1])
                if f.kind == CATEGORICAL:
                    tensor.datatype = "BYTES"
                    tensor.contents.bytes_contents.append(str(row[f.name]).encode())
                else:
                    tensor.datatype = "FP64"
                    tensor.contents.fp64_contents.append(float(row[f.name]))
            assert GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30).outputs[0].shape == [1]
    finally:
        proc.stop()
    modules = _imported(proc.log())
    assert {"predictor.transport.model", "kserve.model", "kserve.protocol.rest.server", "fastapi", "grpc"} <= modules
    assert _heavy(modules) == []
    # deferred (predictor.transport.deferred_imports, predictor.transport.workers), not heavy:
    # a start costs less without them
    assert {"pydantic.v1", "websockets", "numpy.ma"} & modules == set()


_run = functools.partial(python_json, timeout=300)  # code run in a fresh interpreter → its last JSON line


def test_the_deferred_parts_work_when_asked_for() -> None:
    result = _run(
        "import json, sys\n"
        "import predictor.transport.model, kserve.model_server\n"
        "before = sorted(m for m in ('pandas', 'kubernetes', 'kserve.api', 'rich') if m in sys.modules)\n"
        "from kserve.protocol.infer_type import InferInput, InferRequest\n"
        "df = InferRequest('m', [InferInput('a', [2], 'FP64', [1.0, 2.0])]).as_dataframe()\n"
        "import pandas, kserve, httpx\n"
        "pd = sys.modules['kserve.utils.utils'].pd\n"
        "from kserve import Model\n"
        "from fastapi.openapi.models import OpenAPI\n"
        "doc = OpenAPI.model_validate({'openapi': '3.1.0', 'info': {'title': 't', 'version': '1'}, 'paths': {}})\n"
        "import pydantic\n"
        "class Later(pydantic.BaseModel):\n"
        "    a: int\n"
        "import httpx._main\n"
        "print(json.dumps({\n"
        "    'before': before,\n"
        "    'dataframe': type(df) is pandas.DataFrame and df['a'].tolist() == [1.0, 2.0],\n"
        "    'isinstance': [isinstance(df, pd.DataFrame), isinstance([1.0], pd.DataFrame)],\n"
        "    'subclass': issubclass(pandas.DataFrame, pd.DataFrame),\n"
        "    'pd_concat': pd.concat is pandas.concat,\n"
        "    'client': kserve.KServeClient.__module__,\n"
        "    'model': Model is predictor.transport.model.Model,\n"
        "    'openapi': doc.info.title,\n"
        "    'later_deferred': Later.model_config.get('defer_build'),\n"
        "    'httpx_cli': httpx._main.main.__module__ if hasattr(httpx._main.main, '__module__') else None,\n"
        "}))\n"
    )
    assert result["before"] == []
    assert result["dataframe"] is True
    assert result["isinstance"] == [True, False]
    assert result["subclass"] is True
    assert result["pd_concat"] is True
    assert result["client"] == "kserve.api.kserve_client"
    assert result["model"] is True
    assert result["openapi"] == "t"
    assert result["later_deferred"] is None  # only fastapi's own models were deferred
    assert result["httpx_cli"] is not None  # the CLI module itself still imports


def test_pandas_imported_first_is_what_kserve_gets() -> None:
    result = _run(
        "import json, sys\n"
        "import pandas\n"
        "import predictor.transport.model\n"
        "print(json.dumps({'same': sys.modules['kserve.protocol.infer_type'].pd is pandas}))\n"
    )
    assert result == {"same": True}


def test_pydantic_v1_and_yaml_stand_ins_answer_like_the_real_modules() -> None:
    result = _run(
        "import json, sys\n"
        "from predictor.transport.deferred_imports import defer_pydantic_v1\n"
        "defer_pydantic_v1()\n"
        "import kserve.model_server\n"
        "from fastapi import FastAPI\n"
        "from pydantic import BaseModel, v1\n"
        "class Body(BaseModel):\n"
        "    a: int\n"
        "app = FastAPI()\n"
        "app.post('/x')(lambda body: body)  # FastAPI asks whether Body is a v1 model\n"
        "def route(body: Body) -> Body:\n"
        "    return body\n"
        "app.post('/y')(route)\n"
        "lazy = type(sys.modules['yaml']).__name__\n"
        "before = {'v1': type(sys.modules['pydantic.v1']).__name__, 'yaml': lazy,\n"
        "          'checks': [isinstance(Body(a=1), v1.BaseModel), issubclass(Body, v1.BaseModel)]}\n"
        "import yaml\n"
        "doc = yaml.safe_load('a: [1, 2]')\n"
        "real = sys.modules['pydantic.v1'] if v1.validator else None  # any other name: the real module\n"
        "class Old(real.BaseModel):\n"
        "    a: int\n"
        "print(json.dumps({'before': before, 'yaml': doc, 'real': type(real).__name__,\n"
        "    'after': [isinstance(Old(a=1), v1.BaseModel), issubclass(Old, v1.BaseModel),\n"
        "              isinstance(Body(a=1), v1.BaseModel)]}))\n"
    )
    assert result["before"] == {"v1": "_PydanticV1StandIn", "yaml": "_LazyModule", "checks": [False, False]}
    assert result["yaml"] == {"a": [1, 2]}
    assert result["real"] == "module"
    assert result["after"] == [True, True, False]


def test_the_predictor_entry_point_imports_kserve_without_kubernetes() -> None:
    result = _run(
        "import json, sys\n"
        "sys.modules['kubernetes'] = None  # what an interpreter without the package sees\n"
        "import predictor.__main__\n"
        "import kserve\n"
        "from predictor.transport.model import HousingModel\n"
        "try:\n"
        "    kserve.KServeClient()\n"
        "    refused = ''\n"
        "except ImportError as exc:\n"
        "    refused = str(exc)\n"
        "print(json.dumps({'refused': refused, 'model': issubclass(HousingModel, kserve.Model),\n"
        "                  'kubernetes': [m for m in sys.modules if m.startswith('kubernetes') and sys.modules[m]]}))\n"
    )
    assert result == {
        "refused": "kserve.KServeClient needs the kubernetes package, which this image leaves out",
        "model": True,
        "kubernetes": [],
    }


def test_with_kubernetes_installed_kserve_keeps_its_client() -> None:
    result = _run(
        "import json\n"
        "from predictor.transport.deferred_imports import without_kubernetes_client\n"
        "registered = without_kubernetes_client()\n"
        "import kserve\n"
        "print(json.dumps({'registered': registered, 'client': kserve.KServeClient.__module__}))\n"
    )
    assert result == {"registered": False, "client": "kserve.api.kserve_client"}
