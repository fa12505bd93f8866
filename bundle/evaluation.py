"""``evaluation.json``: the evaluation rows of a bundle, the same rows for every version of a dataset.

Training holds out the rows whose row key (a hash of the row's content, every column) falls below
the holdout share — not rows drawn with the seed — so every version trained on the same data is
scored on the same rows and none of them was in another version's training split. The rows are
written into the bundle (raw values, the target last) and their digest is recorded in
``bundle.json`` (``params.evaluation.digest``) and on the MLflow run; the offline quality gate
before a canary (:mod:`rollout.quality_gate`) scores champion and challenger on them.

Layout: ``{"target": NAME, "columns": [feature, ...], "rows": [[value, ...], ...], "y": [target, ...]}``
with JSON values as a client would send them (numbers, strings, booleans, null for missing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVALUATION_FILE = "evaluation.json"


@dataclass
class EvaluationRows:
    """The raw evaluation rows and their targets."""

    target: str
    columns: list[str]
    rows: list[list[Any]]
    y: list[float]

    def records(self) -> list[dict[str, Any]]:
        """One ``{feature: value}`` object per row (what a V1 instance looks like)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _native(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def write_evaluation(path: Path, target: str, records: list[dict[str, Any]], y: list[float]) -> None:
    """Write the rows (``records``: native Python values, NaN as None) deterministically."""
    columns = list(records[0]) if records else []
    rows = [[_native(rec[c]) for c in columns] for rec in records]
    data = {"target": target, "columns": columns, "rows": rows, "y": [float(v) for v in y]}
    Path(path).write_text(json.dumps(data, allow_nan=False, separators=(",", ":")))


def read_evaluation(path: Path) -> EvaluationRows:
    """Read ``evaluation.json`` (verify the bundle with ``load_manifest`` first)."""
    data = json.loads(Path(path).read_text())
    return EvaluationRows(data["target"], list(data["columns"]), data["rows"], [float(v) for v in data["y"]])
