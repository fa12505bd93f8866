"""Names of the Prometheus series the predictor exports: the one place they are spelled.

Rollout gates read these names (:mod:`rollout.analysis_config`), so they are importable without
prometheus_client. Counters are created under the base name; Prometheus exposes them with
``_total`` (:data:`PREDICTIONS_TOTAL` …).
"""

from __future__ import annotations

#: Labels every series carries, so a canary can be judged against the champion.
LABELS = ("model_name", "model_version")
VERSION_LABEL = "model_version"

PREDICTIONS = "housing_predictions"
PREDICTIONS_TOTAL = f"{PREDICTIONS}_total"
PREDICTION_VALUE = "housing_prediction_value"
OUT_OF_RANGE = "housing_out_of_range"
OUT_OF_RANGE_ROWS = "housing_out_of_range_rows"
REQUEST_ERRORS = "housing_request_errors"
REQUEST_ERRORS_TOTAL = f"{REQUEST_ERRORS}_total"
#: Requests the guard refused (reason ``Unauthenticated`` or ``RateLimited``): kept apart from the
#: request errors, which rollout gates judge a model version by.
REQUESTS_REFUSED = "housing_requests_refused"
REQUESTS_REFUSED_TOTAL = f"{REQUESTS_REFUSED}_total"
MODEL_INFO = "housing_model_info"
#: Seconds in the model's predict handler (decode, predict, range check), per version and protocol:
#: KServe's own ``request_predict_seconds`` has no model_version label, so a canary's latency gate
#: reads this one.
REQUEST_DURATION = "housing_request_duration_seconds"
DRIFT_PSI = "housing_drift_psi"
DRIFT_SCORE = "housing_drift_score"
DRIFT_WINDOW_ROWS = "housing_drift_window_rows"
#: The ``feature`` label value of the PSI of the predictions themselves.
PREDICTION_FEATURE = "__prediction__"
#: Extra labels, spelled once (the Grafana dashboard and the alert rules read them here).
PROTOCOL, REASON, FEATURE, FLAVOR, DIGEST = "protocol", "reason", "feature", "flavor", "digest"
