"""Fuzz the V2 REST API from the predictor's own OpenAPI description (schemathesis): never a 5xx.

CI sends HOUSING_FUZZ_REQUESTS requests (default 1,000, about a minute on a 2-core machine;
schemathesis' generation is the bottleneck); ``housing bench --mode fuzz`` sends 5,000 and
records the result in docs/benchmarks.md.
"""

from __future__ import annotations

import os

import pytest

from bench.fuzz import fuzz
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
N_REQUESTS = int(os.environ.get("HOUSING_FUZZ_REQUESTS", "1000"))


def test_generated_v2_requests_never_get_a_server_error(ames_xgb):
    proc = start_predictor(ames_xgb, NAME, ["--max_batch_size", "100"])
    try:
        result = fuzz(proc.http_url, NAME, N_REQUESTS, seed=14)
        print(result.to_dict())
        assert result.requests >= N_REQUESTS
        assert not result.server_errors, "\n".join(result.server_errors)
        assert result.by_operation["POST /v2/models/{model_name}/infer"] >= N_REQUESTS * 0.8
        assert {200, 400, 404} <= set(result.statuses), result.statuses
        assert proc.alive()
        assert "Traceback" not in proc.log()
    finally:
        proc.stop()
