"""Local backend helpers that need no processes."""

from __future__ import annotations

import pytest

from rollout.backends.local import LocalBackend, model_version_from_metrics
from rollout.errors import RolloutError


def test_model_version_from_metrics():
    text = (
        "# TYPE housing_model_info gauge\n"
        'housing_model_info{digest="ab",flavor="linear",model_name="housing",model_version="20250101T000000Z-1a"} 1.0\n'
    )
    assert model_version_from_metrics(text) == "20250101T000000Z-1a"
    assert model_version_from_metrics("up 1\n") is None


def test_commands_need_a_running_deployment(tmp_path):
    backend = LocalBackend(tmp_path, "housing", "nothing")
    assert backend.status().ready is False
    with pytest.raises(RolloutError, match="no local deployment"):
        backend.set_weight(10)
