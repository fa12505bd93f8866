"""The bundle contract shared by training (the writer) and the predictor (the reader).

It depends on nothing else in housing but ``common`` and numpy, so serving never imports training,
scikit-learn or MLflow:

* :mod:`bundle.manifest` — ``bundle.json``: the manifest, digests, :func:`~bundle.manifest.write_bundle`
  and the verifying :func:`~bundle.manifest.load_manifest`.
* :mod:`bundle.schema` — the feature schema (encoding replayed by the predictor) and its
  public coercion of request values.
* :mod:`bundle.model_files` — each model kind's file: writer, reader and reference evaluator
  (``model.ubj``, ``forest.npz``, ``linear.json``); :mod:`bundle.ubjson` reads ``model.ubj``
  without xgboost.
* :mod:`bundle.reference` — ``reference.json`` (training distribution) and the one PSI.
* :mod:`bundle.metrics` — RMSE, MAE, R², MAPE: the holdout metrics a bundle records, and what the
  rollout's quality gate measures on the same evaluation rows.

Where bundles are registered, resolved, promoted and rejected (MLflow) is the package :mod:`registry`.
"""
