from __future__ import annotations

import numpy as np
import pytest

from bundle.reference import binned


def test_binned_proportions() -> None:
    values = np.arange(100, dtype=float)
    b = binned(values)
    assert len(b["proportions"]) == len(b["edges"]) + 1 == 10
    assert sum(b["proportions"]) == pytest.approx(1.0)
    idx = np.searchsorted(b["edges"], values, side="left")
    assert np.bincount(idx, minlength=10)[0] / 100 == b["proportions"][0]
    assert binned(np.ones(20))["proportions"] == [1.0, 0.0]
