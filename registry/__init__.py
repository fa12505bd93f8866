"""The MLflow model registry of bundles, by who asks (``docs/architecture.md``: what each may import).

* :mod:`registry.resolve` — ``models:/NAME@ALIAS`` → the bundle's URI and digest, for serving: no
  ``mlflow`` import for an http(s) tracking server. The predictor imports it; it imports only
  ``common`` and ``bundle``.
* :mod:`registry.lifecycle` — register (training), the aliases' versions, promote and reject
  (rollouts), the quality gate's run.
* :mod:`registry.pyfunc` — the MLflow ``pyfunc`` model of a bundle: signature, requirements, writing
  it; :mod:`registry.pyfunc_model` is that model's code (run by MLflow, loading through the
  predictor's own reader), so this part of the package sits above the predictor.
"""
