"""``housing feedback FILE``: join ground truth (``request_id, actual`` [, ``row``]) to the payload log.

FILE is a CSV or Parquet file, local or ``s3://``. Each label is matched to the logged, answered row
with its request id (and ``row``, 0 when absent: one-row requests); the joined rows (the payload row,
its features, ``actual`` and ``labelled_at``) are written next to the log, under
``<log>/labelled/model_version=<v>/``, one file per version and run. Labels whose request id is not
in the log, or that name the same row twice, are counted and reported (the duplicates are not
joined: which one is true is the sender's to say); nothing is dropped silently.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.store import LABELLED, Store, payload_frame
from predictor.observe.payload_rows import ACTUAL, MODEL_VERSION, PREDICTION, REQUEST_ID, ROW, STATUS

#: The column the time of joining goes to.
LABELLED_AT = "labelled_at"
REQUIRED = (REQUEST_ID, ACTUAL)


class FeedbackError(ValueError):
    """A feedback file that cannot be used (the message names the file and the reason)."""


@dataclass
class FeedbackResult:
    """What one feedback run did."""

    labels: int = 0
    joined: int = 0
    unknown: int = 0
    duplicates: int = 0
    not_answered: int = 0
    written: dict[str, str] = field(default_factory=dict)  # model version → file
    skipped_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_labels(source: str) -> Any:
    """The feedback file as a pandas frame; FeedbackError naming a missing column or an unreadable file."""
    import pandas as pd

    if source.startswith("s3://"):
        parent, _, name = source.rpartition("/")
        data = Store(parent).read_bytes(name)
    else:
        path = Path(source)
        if not path.is_file():
            raise FeedbackError(f"{source}: no such file")
        data, name = path.read_bytes(), path.name
    try:
        frame = pd.read_parquet(io.BytesIO(data)) if name.endswith(".parquet") else pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pandas raises many kinds for a bad file
        kind = "Parquet" if name.endswith(".parquet") else "CSV"
        raise FeedbackError(f"{source}: cannot read it as {kind}: {exc}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise FeedbackError(f"{source}: missing column {', '.join(missing)} (needs {', '.join(REQUIRED)}[, {ROW}])")
    frame = frame.copy()
    frame[REQUEST_ID] = frame[REQUEST_ID].astype(str)
    frame[ROW] = frame[ROW].fillna(0).astype("int32") if ROW in frame.columns else 0
    actual = pd.to_numeric(frame[ACTUAL], errors="coerce")
    bad = int(actual.isna().sum())
    if bad:
        raise FeedbackError(f"{source}: column {ACTUAL}: {bad} value(s) are not numbers")
    frame[ACTUAL] = actual.astype("float64")
    return frame[[REQUEST_ID, ROW, ACTUAL]]


def join_feedback(source: str, log_uri: str) -> FeedbackResult:
    """Join ``source``'s labels to the log at ``log_uri``; write the joined rows under ``labelled/``."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = read_labels(source)
    res = FeedbackResult(labels=len(labels))
    dup = labels.duplicated([REQUEST_ID, ROW], keep=False)
    res.duplicates = int(dup.sum())
    labels = labels[~dup]
    store = Store(log_uri)
    log = payload_frame(store)
    res.skipped_files = list(store.skipped)
    if log.empty:
        res.unknown = len(labels)
        return res
    log = log.drop_duplicates([REQUEST_ID, ROW], keep="last")
    merged = labels.merge(log, on=[REQUEST_ID, ROW], how="left", indicator=True)
    found = merged["_merge"] == "both"
    res.unknown = int((~found).sum())
    merged = merged[found].drop(columns="_merge")
    answered = (merged[STATUS] == 200) & merged[PREDICTION].notna()
    res.not_answered = int((~answered).sum())
    merged = merged[answered]
    merged[LABELLED_AT] = pd.Timestamp.now(tz="UTC")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for version, group in merged.groupby(MODEL_VERSION):
        out = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(group.reset_index(drop=True), preserve_index=False), out)
        key = f"{LABELLED}/{MODEL_VERSION}={version}/feedback-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        res.written[str(version)] = store.write_bytes(key, out.getvalue().to_pybytes())
        res.joined += len(group)
    return res
