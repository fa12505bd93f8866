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
#: Paired comparison of shadowed requests (the same row answered by both versions), per challenger
#: ``model_version``: pairs, and the relative differences ``r = (challenger − champion)/|champion|``
#: as Σ max(r, 0), Σ max(−r, 0) and Σ r² — counters must only grow, so the signed sum is split.
ROUTER_SHADOW_PAIRS = "housing_router_shadow_pairs"
ROUTER_SHADOW_DIFF_UP = "housing_router_shadow_rel_diff_up"
ROUTER_SHADOW_DIFF_DOWN = "housing_router_shadow_rel_diff_down"
ROUTER_SHADOW_DIFF_SQUARES = "housing_router_shadow_rel_diff_squares"
