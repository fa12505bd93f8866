"""predictor.guard.client_errors.SampledLog: a flood of refusals is a few log lines; the count stays exact."""

from __future__ import annotations

import logging

from predictor.guard.client_errors import SampledLog


def test_a_flood_is_sampled_and_the_next_window_says_how_many_were_left_out(caplog):
    now = [0.0]
    sampled = SampledLog(first=3, interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="predictor"):
        written = sum(sampled("POST", "/v1/models/m:predict", 401, "Unauthenticated", "r") for _ in range(1000))
        assert sampled("POST", "/x", 429, "RateLimited", "r")  # each reason has its own window
        now[0] = 10.0
        assert sampled("POST", "/v1/models/m:predict", 401, "Unauthenticated", "r", "invalid API key")
    assert written == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5
    assert "[997 more Unauthenticated not logged before this one; counts: /metrics] invalid API key" in lines[-1]
