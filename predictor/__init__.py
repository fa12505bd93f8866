"""The housing predictor: a KServe custom model serving one artifact bundle.

Run it with ``python -m predictor`` (KServe's ModelServer flags plus ``--model_dir``,
``--storage_uri``, ``--bundle_digest``/``HOUSING_BUNDLE_DIGEST``, ``--max_batch_size``) or
``housing serve``. Subpackages, by responsibility (what each may import: ``docs/architecture.md``):

* :mod:`predictor.core` — where a bundle comes from, the verified bundle, the evaluator (+ C), TreeSHAP
  (+ C), out-of-range flags; the bundle format itself is the contract package :mod:`bundle`.
* :mod:`predictor.codec` — V1 instances / V2 tensors → the model's float64 layout, with 400-class
  errors naming the field and the reason; binary V2 bodies checked before KServe decodes them.
* :mod:`predictor.transport` — the ``kserve.Model``, the V1/V2 REST routes and middleware, gRPC, the
  REST workers, and :mod:`predictor.transport.deferred_imports` — what serving never uses
  (``kserve/__init__`` with the Kubernetes client, KServe's pandas, httpx's CLI) is imported when
  something uses it; armed by ``predictor/transport/__init__.py``, so importing any other predictor
  module has no side effect.
* :mod:`predictor.guard` — API keys, rate limits, the client-error log.
* :mod:`predictor.observe` — Prometheus series (their names: :mod:`common.series`), drift, the multi-process registry.
* :mod:`predictor.client` — what serving never runs: ``housing serve``/``predict``, the V2 request
  builder (the MLflow pyfunc model, which loads through :mod:`predictor.core.loaded`, is
  :mod:`registry.pyfunc_model`).

The protocol (V1, V2 REST and gRPC, errors, out-of-range flags, explanations) and the metrics
are described in ``predictor/README.md``.
"""
