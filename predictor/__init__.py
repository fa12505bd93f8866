"""The housing predictor: a KServe custom model serving one artifact bundle.

Run it with ``python -m predictor`` (KServe's ModelServer flags plus ``--model_dir``,
``--storage_uri``, ``--bundle_digest``/``HOUSING_BUNDLE_DIGEST``, ``--max_batch_size``) or
``housing serve``. Modules:

* the bundle format, feature schema and model files come from the contract package
  :mod:`bundle` (shared with training, which writes them).
* :mod:`predictor.loaded` — a verified bundle turned into an evaluator (+ explanations).
* :mod:`predictor.fastpath` (+ the optional C extension ``predictor._fastpath``) — compiled tree
  ensembles and linear models.
* :mod:`predictor.codec` — V1 instances / V2 tensors → the model's float64 layout, with
  400-class errors naming the field and the reason; :mod:`predictor.ranges` — out-of-range flags.
* :mod:`predictor.model` — :class:`~predictor.model.HousingModel` (``kserve.Model``).
* :mod:`predictor.metrics` — Prometheus series labelled ``model_name``/``model_version``;
  :mod:`predictor.drift` — drift of served rows against the bundle's ``reference.json``;
  :mod:`predictor.series` — the series' names (rollout gates import them).
* :mod:`predictor.storage` — ``s3://``/``file://``/paths via kserve-storage, ``models:/`` via MLflow.
* :mod:`predictor.v2_request` — V2 request bodies from ``{feature: value}`` rows (clients, tests).
* :mod:`predictor.deferred_imports` — what serving never uses (``kserve/__init__`` with the
  Kubernetes client, KServe's pandas, httpx's CLI) is imported when something uses it; installed
  here, before any of these modules imports kserve.

The protocol (V1, V2 REST and gRPC, errors, out-of-range flags, explanations) and the metrics
are described in ``predictor/README.md``.
"""

from predictor.deferred_imports import install as _defer_imports

_defer_imports()
