"""Which request values lie outside what training saw: flagged in the answer and counted.

Numeric features: below the training minimum or above the maximum. Categorical features: the
``unknown`` code, when no category seen in training shares it. The mask is computed once per
request by :class:`~predictor.transport.model.HousingModel`, which flags the features in the response
and hands the mask to :class:`~predictor.observe.metrics.ModelMetrics` to count.
"""

from __future__ import annotations

import numpy as np

from bundle.schema import NUMERIC, FeatureSchema
from predictor.core.fastpath import load_extension

#: The C extension's interface version this module was written for (``_ranges.c``: RANGES_ABI).
ABI = 1
_c_out_of_range = getattr(load_extension("_ranges", ABI), "out_of_range", None)


class RangeCheck:
    """The training ranges of one schema, as arrays aligned with the model's input columns."""

    def __init__(self, schema: FeatureSchema) -> None:
        n = len(schema.features)
        lo = np.full(n, -np.inf)
        hi = np.full(n, np.inf)
        unk = np.full(n, np.nan)
        for j, f in enumerate(schema.features):
            if f.kind == NUMERIC:
                lo[j] = -np.inf if f.min is None else float(f.min)
                hi[j] = np.inf if f.max is None else float(f.max)
            elif f.unknown is not None and float(f.unknown) not in {float(v) for v in f.categories.values()}:
                unk[j] = float(f.unknown)
        self.lo, self.hi, self.unk = lo, hi, unk
        self._check_unk = bool(np.isfinite(unk).any())
        self._row_mask = np.zeros((1, n), dtype=np.bool_)
        self._row_mask_u8 = self._row_mask.view(np.uint8)

    def out_of_range(self, X: np.ndarray) -> np.ndarray | None:
        """Boolean (n, F) mask of values outside the training range / unseen categories; None if none."""
        if _c_out_of_range is not None and X.flags.c_contiguous and X.dtype == np.float64:
            # one row: count into a scratch row first (most rows are in range, nothing to allocate)
            if X.shape[0] == 1 and _c_out_of_range(X, self.lo, self.hi, self.unk, self._row_mask_u8) == 0:
                return None
            mask = np.empty(X.shape, dtype=np.bool_)
            if _c_out_of_range(X, self.lo, self.hi, self.unk, mask.view(np.uint8)) == 0:
                return None
            return mask
        mask = (X < self.lo) | (X > self.hi)
        if self._check_unk:
            mask |= X == self.unk
        return mask if mask.any() else None
