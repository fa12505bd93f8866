"""Reading the payload log (a directory or ``s3://bucket/prefix``, as ``--payload_log_uri`` wrote it).

Files are listed under ``model_version=<v>/date=<d>/`` (the predictor's partitions) or, for labelled
rows, under ``labelled/model_version=<v>/``; each file is read on its own, so one that is truncated
(a writer killed mid-file, a partial upload) or not Parquet at all is skipped with a warning naming
it and the others are read.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import PAYLOAD_LOG_ENV, load_settings
from predictor.observe.payload_log import S3Sink

log = logging.getLogger("housing.monitor")

#: Where labelled rows (the payload rows joined with their true price) go, under the log's URI.
LABELLED = "labelled"


def default_uri() -> str:
    """``HOUSING_PAYLOAD_LOG_URI``, else ``<HOUSING_HOME>/payloads`` (the embedded mode's)."""
    return os.environ.get(PAYLOAD_LOG_ENV) or str(load_settings().home / "payloads")


class UnreadableFile(UserWarning):
    """A payload file that could not be read (truncated, not Parquet); it is skipped."""


@dataclass
class Store:
    """A payload log location: list, read and write its Parquet files."""

    uri: str
    skipped: list[str] = field(default_factory=list)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def _s3(self) -> S3Sink:
        return S3Sink(self.uri)

    def list(self, under: str = "") -> list[str]:
        """Keys (relative to the URI) of the ``.parquet`` files under ``under``, sorted."""
        if self.is_s3:
            sink = self._s3()
            base = f"{sink.prefix}/" if sink.prefix else ""
            keys: list[str] = []
            pages = sink.client().get_paginator("list_objects_v2").paginate(Bucket=sink.bucket, Prefix=base + under)
            for page in pages:
                keys += [o["Key"][len(base) :] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]
            return sorted(keys)
        root = Path(self.uri.removeprefix("file://"))
        start = root / under
        if not start.exists():
            return []
        return sorted(p.relative_to(root).as_posix() for p in start.rglob("*.parquet") if not p.name.startswith("."))

    def read_bytes(self, key: str) -> bytes:
        if self.is_s3:
            sink = self._s3()
            name = f"{sink.prefix}/{key}" if sink.prefix else key
            return sink.client().get_object(Bucket=sink.bucket, Key=name)["Body"].read()
        return (Path(self.uri.removeprefix("file://")) / key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write ``key``; returns where it went."""
        sink = self._s3() if self.is_s3 else None
        if sink is not None:
            sink.write(key, data)
            return f"s3://{sink.bucket}/{sink.prefix + '/' if sink.prefix else ''}{key}"
        from predictor.observe.payload_log import DirectorySink

        DirectorySink(self.uri).write(key, data)
        return str(Path(self.uri.removeprefix("file://")) / key)

    def read_tables(self, keys: Iterable[str]) -> list[Any]:
        """The Arrow tables of ``keys``; an unreadable file is skipped with a warning naming it."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for key in keys:
            try:
                tables.append(pq.read_table(io.BytesIO(self.read_bytes(key))))
            except (pa.ArrowInvalid, OSError) as exc:
                self.skipped.append(key)
                warnings.warn(f"{self.uri}/{key}: skipped, not a readable Parquet file ({exc})", UnreadableFile, 2)
        return tables


def versions_of(keys: Iterable[str]) -> set[str]:
    """The model versions named by ``model_version=…`` partitions in ``keys``."""
    out = set()
    for key in keys:
        for part in key.split("/"):
            if part.startswith("model_version="):
                out.add(part.split("=", 1)[1])
    return out


def payload_frame(store: Store, version: str | None = None, dates: set[str] | None = None) -> Any:
    """The payload rows (pandas) of ``version`` (else all) whose date partition is in ``dates`` (else all)."""
    import pandas as pd
    import pyarrow as pa

    keys = []
    for key in store.list():
        if key.startswith(LABELLED + "/"):
            continue
        parts = dict(p.split("=", 1) for p in key.split("/")[:-1] if "=" in p)
        if version is not None and parts.get("model_version") != version:
            continue
        if dates is not None and parts.get("date") not in dates:
            continue
        keys.append(key)
    from predictor.observe.payload_rows import expand

    tables = [expand(t) for t in store.read_tables(keys)]  # bodies → the feature columns
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def labelled_frame(store: Store) -> Any:
    """Every labelled row (pandas); a row labelled twice keeps its latest label."""
    import pandas as pd
    import pyarrow as pa

    from predictor.observe.payload_rows import REQUEST_ID, ROW

    tables = store.read_tables(store.list(LABELLED))
    if not tables:
        return pd.DataFrame()
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame = frame.sort_values("labelled_at").drop_duplicates([REQUEST_ID, ROW], keep="last")
    return frame.reset_index(drop=True)
