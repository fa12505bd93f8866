"""The housing predictor: a KServe custom model serving one artifact bundle.

Run it with ``python -m predictor`` (KServe's ModelServer flags plus ``--model_dir``,
``--storage_uri``, ``--bundle_digest``/``HOUSING_BUNDLE_DIGEST``, ``--max_batch_size``) or
``housing serve``. Modules:

* :mod:`bundle.manifest`, :mod:`bundle.schema` — the bundle format and feature schema
  (the contract with training).
* :mod:`predictor.loaded` — a verified bundle turned into an evaluator (+ explanations).
* :mod:`predictor.fastpath` (+ the optional C extension ``predictor._fastpath``) — compiled tree
  ensembles and linear models; :mod:`bundle.ubjson` reads XGBoost's ``model.ubj`` without
  importing xgboost.
* :mod:`predictor.codec` — V1 instances / V2 tensors → the model's float64 layout, with
  400-class errors naming the field and the reason.
* :mod:`predictor.model` — :class:`~predictor.model.HousingModel` (``kserve.Model``).
* :mod:`predictor.metrics` — Prometheus series labelled ``model_name``/``model_version``;
  :mod:`predictor.drift` — drift of served rows against the bundle's ``reference.json``;
  :mod:`predictor.series` — the series' names (rollout gates import them).
* :mod:`predictor.storage` — ``s3://``/``file://``/paths via kserve-storage, ``models:/`` via MLflow.

Protocol notes (beyond the KServe defaults):

* V1 accepts ``{"instances": [...]}`` with ``{feature: value}`` objects or lists in schema order,
  and one bare ``{feature: value}`` object. Answer: ``{"predictions": [...]}`` in price units.
* Values outside the training range (and categories never seen in training) are served; V1 names
  the features in the ``x-housing-out-of-range`` response header, V2 (REST and gRPC) in the
  response ``parameters`` (``out_of_range``: comma-separated names, ``out_of_range_rows``).
* ``:explain`` answers ``{"scale": "log"|"price", "explanations": [{"prediction", "price", "bias",
  "contributions": {feature: value}}]}``; ``bias + sum(contributions) == prediction`` (model scale).
* A bundle whose digests do not verify is never served: the process exits with status 2 and a
  one-line reason (the pod never becomes ready).
* ``--workers N`` > 1 uses KServe's multi-process REST server; each worker then exports its own
  metrics (prefer more replicas to more workers when Prometheus gates a rollout).
"""
