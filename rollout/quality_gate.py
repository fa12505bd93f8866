"""Before a canary starts: the same schema, and a challenger no worse than the champion offline.

:func:`check` loads both bundles through the predictor's verifying reader, refuses a pair whose
feature schemas differ (:mod:`bundle.compat`), then scores both on the challenger's evaluation
rows (``evaluation.json``: rows chosen by a hash of their content, the same rows for every version
of a dataset, :mod:`bundle.evaluation`) and refuses a challenger whose RMSE exceeds the
champion's by more than ``tolerance`` (relative) — unless the caller overrides it, which the
rollout's event log records. Both versions' figures are logged to MLflow
(:func:`registry.lifecycle.log_quality_gate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bundle.compat import SchemaShape, differences
from bundle.evaluation import EVALUATION_FILE, EvaluationRows, read_evaluation
from bundle.metrics import regression_metrics
from predictor.core.loaded import LoadedBundle, load_bundle
from rollout.errors import SchemaMismatch

PASSED = "passed"
REFUSED = "refused"
OVERRIDDEN = "overridden"
SKIPPED = "skipped"
#: Default tolerance: the challenger's evaluation RMSE may exceed the champion's by 2 %.
DEFAULT_TOLERANCE = 0.02


@dataclass
class GateResult:
    """The decision and the figures behind it (what the event log and MLflow record)."""

    decision: str  # passed | refused | overridden | skipped
    reason: str
    tolerance: float
    champion: dict[str, float] = field(default_factory=dict)
    challenger: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    rows_digest: str | None = None
    same_rows: bool | None = None  # both bundles recorded the same evaluation rows

    @property
    def refused(self) -> bool:
        return self.decision == REFUSED

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def score(bundle: LoadedBundle, rows: EvaluationRows) -> dict[str, float]:
    """RMSE, MAE, R² in target units (and RMSE of the log when every value is positive)."""
    X = np.empty((len(rows.rows), bundle.n_features), dtype=np.float64)
    for i, record in enumerate(rows.records()):
        bundle.schema.encode_mapping(record, X[i])
    pred, y = bundle.predict(X), np.asarray(rows.y, dtype=np.float64)
    out = regression_metrics(y, pred, mape=False)  # the holdout metrics' definitions (training's)
    if (y > 0).all() and (pred > 0).all():
        out["rmse_log"] = regression_metrics(np.log(y), np.log(pred), mape=False)["rmse"]
    return out


def _evaluation(bundle: LoadedBundle) -> dict[str, Any]:
    return dict(bundle.manifest.params.get("evaluation") or {})


def check_schemas(champion: LoadedBundle, challenger: LoadedBundle) -> None:
    """Raise :class:`SchemaMismatch` naming what differs."""
    diffs = differences(SchemaShape.of_manifest(champion.manifest), SchemaShape.of_manifest(challenger.manifest))
    if diffs:
        raise SchemaMismatch(
            f"champion ({champion.manifest.model_version}) and challenger ({challenger.manifest.model_version}) "
            f"have different feature schemas: {'; '.join(diffs)}; a canary between them would send one "
            "model's requests to the other"
        )


def check(
    champion_dir: Path | str,
    challenger_dir: Path | str,
    champion_digest: str | None = None,
    challenger_digest: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    allow_worse: bool = False,
) -> GateResult:
    """Schemas first (:class:`SchemaMismatch`), then both versions on the challenger's evaluation rows."""
    if tolerance < 0:
        raise ValueError(f"quality tolerance must be 0 or more, got {tolerance}")
    champion = load_bundle(champion_dir, champion_digest)
    challenger = load_bundle(challenger_dir, challenger_digest)
    check_schemas(champion, challenger)
    path = Path(challenger_dir) / EVALUATION_FILE
    if EVALUATION_FILE not in challenger.manifest.files or not path.is_file():
        return GateResult(SKIPPED, f"the challenger's bundle has no {EVALUATION_FILE}", tolerance)
    rows = read_evaluation(path)
    ours, theirs = _evaluation(challenger), _evaluation(champion)
    result = GateResult(
        PASSED,
        "",
        tolerance,
        champion=score(champion, rows),
        challenger=score(challenger, rows),
        rows=len(rows.rows),
        rows_digest=ours.get("digest"),
        same_rows=ours.get("digest") is not None and ours.get("digest") == theirs.get("digest"),
    )
    limit = result.champion["rmse"] * (1 + tolerance)
    figures = (
        f"evaluation RMSE on {result.rows} rows: challenger {result.challenger['rmse']:.6g} vs champion "
        f"{result.champion['rmse']:.6g} (limit {limit:.6g} = champion + {tolerance:.1%})"
    )
    if not result.same_rows:
        figures += "; the champion recorded other evaluation rows, so some of these may be in its training data"
    if result.challenger["rmse"] <= limit:
        result.reason = figures
    elif allow_worse:
        result.decision, result.reason = OVERRIDDEN, f"worse than the champion, overridden (--allow-worse): {figures}"
    else:
        result.decision, result.reason = REFUSED, f"challenger worse than the champion: {figures}"
    return result
