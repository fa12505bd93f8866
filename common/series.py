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
#: Inference requests answered, by ``protocol`` and status ``code`` (gRPC codes as their HTTP
#: equivalents), 5xx and internal exceptions included: the error gate's failed ÷ requests.
REQUESTS = "housing_requests"
REQUESTS_TOTAL = f"{REQUESTS}_total"
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
#: The payload log (:mod:`predictor.observe.payload_log`): rows not written (label ``reason``), failed
#: writes, rows written.
PAYLOAD_DROPPED = "housing_payload_rows_dropped"
PAYLOAD_WRITE_ERRORS = "housing_payload_write_errors"
PAYLOAD_WRITTEN = "housing_payload_rows_written"
#: Live accuracy per model version, from labelled payload rows (``housing quality --serve``): RMSE, MAE,
#: MAPE, R² and the labelled rows they were measured on.
LIVE_RMSE = "housing_live_rmse"
LIVE_MAE = "housing_live_mae"
LIVE_MAPE = "housing_live_mape"
LIVE_R2 = "housing_live_r2"
LIVE_LABELLED_ROWS = "housing_live_labelled_rows"
CODE = "code"
