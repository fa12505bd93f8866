"""The ground floor: what every other package may import, and which imports none of them.

* :mod:`common.config` — names, ports, the bucket, the MLflow aliases and tags, the settings from the
  environment: the one place a default is spelled.
* :mod:`common.series` — the names of the predictor's Prometheus series (rollout gates, the dashboard
  and the alert rules read them without importing the predictor).
* :mod:`common.net` — a free loopback port, waiting for an HTTP endpoint.
* :mod:`common.procs` — stopping a process we started.
* :mod:`common.urls` — URLs fit for logs (no credentials, no query string).
"""
