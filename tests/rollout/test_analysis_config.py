"""Rollout configuration: the steps."""

from __future__ import annotations

import pytest

from rollout.analysis_config import parse_steps


def test_parse_steps():
    assert parse_steps("10,25,50,100") == [10, 25, 50, 100]
    for bad in ("", "10,x", "50,25,100", "10,50", "0,100", "10,200"):
        with pytest.raises(ValueError):
            parse_steps(bad)
