"""Out-of-range flags: numeric values beyond the training range, categories never seen."""

from __future__ import annotations

import numpy as np

from bundle.schema import CATEGORICAL
from predictor.core.ranges import RangeCheck


def test_out_of_range_mask(boston):
    bundle, dec = boston
    ranges = RangeCheck(bundle.schema)
    median = {f.name: f.quantiles[5] for f in bundle.schema.features}
    X = dec.v1({"instances": [median, {**median, "CRIM": 1e6}]})
    mask = ranges.out_of_range(X)
    assert not mask[0].any()
    assert mask[1].tolist() == [name == "CRIM" for name in bundle.schema.names]
    assert ranges.out_of_range(X[:1]) is None
    # the numpy fallback agrees with the C extension
    numpy_mask = (X < ranges.lo) | (X > ranges.hi) | (X == ranges.unk)
    assert np.array_equal(mask, numpy_mask)


def test_unseen_category_is_out_of_range(ames):
    bundle, dec = ames
    ranges = RangeCheck(bundle.schema)
    row = {}
    for f in bundle.schema.features:
        row[f.name] = next(iter(f.categories)) if f.kind == CATEGORICAL else float(f.quantiles[5])
    cat = next(f for f in bundle.schema.features if f.kind == CATEGORICAL)
    X = dec.v1({"instances": [row, {**row, cat.name: "never-seen-in-training"}]})
    assert X[1, bundle.schema.index[cat.name]] == cat.unknown
    mask = ranges.out_of_range(X)
    assert mask is not None and not mask[0].any()
    assert [bundle.schema.names[j] for j in np.flatnonzero(mask[1])] == [cat.name]
