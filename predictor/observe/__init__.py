"""Observability: the Prometheus series (:mod:`.metrics`; their names are :mod:`common.series`, which rollout,
the dashboard and the alerts import without the predictor), drift (:mod:`.drift`) and the multi-process
registry (:mod:`.multiproc`), the per-request log lines on or off (:mod:`.request_logs`).

Imports ``common``, ``bundle`` (the schema, the reference) and itself; no KServe, no model core.
"""
