"""Names of the Prometheus series the local router exports (:mod:`rollout.router`).

The gates read them (:class:`rollout.analysis_config.MetricNames`), so they are spelled once, here.
Counters are created under the base name and exposed with ``_total``.
"""

from __future__ import annotations

ROUTER_REQUESTS = "housing_router_requests"
ROUTER_REQUESTS_TOTAL = f"{ROUTER_REQUESTS}_total"
ROUTER_REQUEST_SECONDS = "housing_router_request_duration_seconds"
ROUTER_WEIGHT_PERCENT = "housing_router_weight_percent"
ROUTER_SHADOW_REQUESTS = "housing_router_shadow_requests"
ROUTER_SHADOW_ABS_DIFF = "housing_router_shadow_abs_diff"
ROUTER_SHADOW_REL_DIFF = "housing_router_shadow_rel_diff"
