"""Serving stands on the bundle contract alone: it never imports training, scikit-learn or MLflow.

Nor what :mod:`predictor.transport.deferred_imports` defers (pandas, the Kubernetes client); what a
serving process imports while it answers requests: ``test_deferred_imports.py``.
"""

from __future__ import annotations

import json

from testkit.procs import python_json

#: Everything ``python -m predictor`` loads before it serves (the entry point, the model, storage).
SERVING_MODULES = ["predictor", "predictor.__main__", "predictor.transport.model", "predictor.core.storage", "kserve"]
FORBIDDEN = (
    "training",
    "sklearn",
    "mlflow",
    "xgboost",
    "rollout",
    "bench",
    "pandas",
    "kubernetes",
    "matplotlib",
    "pyarrow",
)  # pyarrow: only the payload log imports it, when it is on


def test_predictor_imports_neither_training_nor_sklearn_nor_mlflow() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVING_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    loaded = set(python_json(code, timeout=120))
    assert "predictor" in loaded and "bundle" in loaded
    assert sorted(loaded.intersection(FORBIDDEN)) == []


def test_explaining_imports_neither_xgboost_nor_sklearn(ames_xgb) -> None:
    """``:explain`` of an XGBoost bundle runs TreeSHAP over our own packed trees, not the library's."""
    from testkit.holdout import holdout, records

    test, features = holdout("ames")
    rows = json.dumps(records(test[features].iloc[:2]))
    code = (
        "import json, sys\n"
        "from predictor.transport.model import HousingModel\n"
        f"model = HousingModel('housing', {str(ames_xgb)!r})\n"
        "model.load()\n"
        f"out = model.explain({{'instances': json.loads({rows!r})}})\n"
        "print(json.dumps([len(out['explanations']), sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    n, loaded = python_json(code, timeout=120)
    assert n == 2
    assert sorted(set(loaded).intersection(FORBIDDEN)) == []
