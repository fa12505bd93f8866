"""Importing a module of this project changes nothing but ``sys.modules``; only the serving layer arms
:mod:`predictor.transport.deferred_imports` (its ``sys.meta_path`` finder and the ``kserve`` package
whose ``__init__`` runs on demand).

Libraries may add their own finders (six, importlib_metadata): only ours are looked for.
Rollout, the dashboard, the alert rules, training and MLflow's pyfunc read the predictor's series
names and its model core; none of them may get the serving process's import machinery with them.
"""

from __future__ import annotations

import functools
from pathlib import Path

from testkit.procs import python_json

ROOT = Path(__file__).resolve().parents[1]
#: The serving layer: the entry point and the transport (the model, the routes, the workers) arm it, and so
#: do what runs the transport in-process (the guard's cost benchmark, the tests' KServe app and gRPC server).
SERVING = ("predictor.__main__", "predictor.transport", "bench.guard_cost", "testkit.kserve_app", "testkit.grpc_thread")


def _packages() -> list[str]:
    return sorted(init.parent.name for init in ROOT.glob("*/__init__.py") if init.parent.name != "tests")


def _modules() -> list[str]:
    """Every first-party module but the serving layer and the ``__main__`` entry points."""
    names = []
    for package in _packages():
        init = ROOT / package / "__init__.py"
        for path in sorted(init.parent.rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if parts[-1] == "__main__" or any(name == s or name.startswith(s + ".") for s in SERVING):
                continue
            names.append(name)
    return names


_run = functools.partial(python_json, timeout=600)  # code run in a fresh interpreter → its last JSON line


def test_importing_any_non_serving_module_leaves_the_import_machinery_untouched() -> None:
    modules = _modules()
    assert "predictor.observe.metrics" in modules and "registry.pyfunc_model" in modules
    code = (
        "import importlib, json, sys\n"
        f"ours = {tuple(_packages())!r}\n"
        "before = list(sys.meta_path)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "kserve = sys.modules.get('kserve')\n"
        "print(json.dumps({\n"
        "    'added': [type(f).__module__ + '.' + type(f).__qualname__ for f in sys.meta_path\n"
        "              if f not in before and type(f).__module__.split('.')[0] in ours],\n"
        "    'kserve_without_init': kserve is not None and 'Model' not in vars(kserve),\n"
        "    'pydantic_v1': type(sys.modules.get('pydantic.v1')).__name__,\n"
        "}))\n"
    )
    result = _run(code)
    assert result["added"] == []
    assert result["kserve_without_init"] is False
    assert result["pydantic_v1"] in ("module", "NoneType")


def test_the_serving_layer_arms_it() -> None:
    code = (
        "import json, sys\n"
        "import predictor.observe.metrics, predictor.core.loaded\n"
        "before = [type(f).__name__ for f in sys.meta_path]\n"
        "import predictor.transport\n"
        "print(json.dumps([before, [type(f).__name__ for f in sys.meta_path]]))\n"
    )
    before, after = _run(code)
    assert "_Finder" not in before
    assert after[0] == "_Finder"
