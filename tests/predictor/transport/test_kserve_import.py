"""``import kserve`` where the ``kubernetes`` package is absent, as in the serving image."""

from __future__ import annotations

import functools

from testkit.procs import python_json

_run = functools.partial(python_json, timeout=120)  # code run in a fresh interpreter → its last JSON line


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
