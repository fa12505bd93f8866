"""Synthetic live traffic for the embedded mode: rows drawn from a bundle's own statistics.

Numeric features: pick one of the training deciles (``schema.features[].quantiles``: min,
10 %, …, 90 %, max) uniformly, then a value uniformly inside it; integer dtypes are rounded.
Categorical features: drawn by the training frequencies in ``reference.json``. The traffic
therefore looks like the training data (no drift) without shipping the data itself.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bundle.manifest import MANIFEST, REFERENCE_FILE
from common.config import API_KEY_ENV, API_KEY_HEADER


def sampler(bundle: dict[str, Any], seed: int = 0):  # noqa: ANN201 - a row factory
    """``bundle`` = ``{"schema": …, "reference": …}`` as returned by :func:`reference_of`."""
    rnd = random.Random(seed)
    categorical = (bundle.get("reference") or {}).get("categorical", {})
    features = bundle["schema"]["features"]

    def row() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for feat in features:
            name = feat["name"]
            if feat.get("kind") == "numeric":
                qs = feat.get("quantiles") or [feat.get("min", 0.0), feat.get("max", 0.0)]
                k = rnd.randrange(len(qs) - 1) if len(qs) > 1 else 0
                lo, hi = qs[k], qs[min(k + 1, len(qs) - 1)]
                value = rnd.uniform(lo, hi) if hi > lo else lo
                out[name] = round(value) if str(feat.get("dtype", "")).startswith("int") else value
            elif name in categorical:
                freqs = categorical[name]["frequencies"]
                out[name] = rnd.choices(list(freqs), weights=list(freqs.values()))[0]
            elif feat.get("categories"):
                out[name] = rnd.choice(list(feat["categories"]))
            else:
                out[name] = feat.get("default")
        return out

    return row


def reference_of(bundle_dir: str | Path) -> dict[str, Any]:
    """The schema (from ``bundle.json``) and reference statistics of a local bundle directory."""
    bundle_dir = Path(bundle_dir)
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    ref_path = bundle_dir / REFERENCE_FILE
    reference = json.loads(ref_path.read_text()) if ref_path.exists() else {}
    return {"schema": manifest["schema"], "reference": reference}


class TrafficGenerator:
    """Send about ``rps`` V1 requests per second through ``url`` in a background thread.

    With an API key (``api_key``, else ``HOUSING_API_KEY``) every request carries ``X-API-Key``.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        reference: dict[str, Any],
        rps: float = 50.0,
        seed: int = 0,
        api_key: str | None = None,
    ) -> None:
        self.url = f"{url.rstrip('/')}/v1/models/{model_name}:predict"
        key = api_key or os.environ.get(API_KEY_ENV)
        self.headers = {API_KEY_HEADER: key} if key else {}
        self.row = sampler(reference, seed)
        self.rps = rps
        self.codes: Counter = Counter()
        self.versions: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        period = 1.0 / self.rps if self.rps > 0 else 0.0
        with httpx.Client(timeout=10.0, headers=self.headers) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, json={"instances": [self.row()]})
                    self.codes[r.status_code] += 1
                    self.versions[r.headers.get("x-model-version")] += 1
                except httpx.HTTPError:
                    self.codes["error"] += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()

    def __enter__(self) -> TrafficGenerator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
