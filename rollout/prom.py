"""A small client of the Prometheus HTTP API (``/api/v1/query``) used by the analysis."""

from __future__ import annotations

import math
from typing import Any

import httpx

from rollout.errors import PrometheusError


class Prometheus:
    """Instant queries against one Prometheus server."""

    def __init__(self, url: str, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout)

    def raw(self, promql: str, time: float | None = None) -> list[dict[str, Any]]:
        """The ``data.result`` vector of an instant query."""
        params: dict[str, Any] = {"query": promql}
        if time is not None:
            params["time"] = f"{time:.3f}"
        try:
            response = self.client.get(f"{self.url}/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.url} unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(f"Prometheus answered HTTP {response.status_code} without JSON") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"query failed ({body.get('errorType')}): {body.get('error')} — {promql}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def scalar(self, promql: str) -> float | None:
        """The single value of a query (first sample), or None when the result is empty/NaN."""
        result = self.raw(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def by_label(self, promql: str, label: str) -> dict[str, float]:
        """``{label value: sample}`` for a vector query."""
        out: dict[str, float] = {}
        for item in self.raw(promql):
            value = float(item["value"][1])
            if not math.isnan(value):
                out[item["metric"].get(label, "")] = value
        return out

    def ready(self) -> bool:
        try:
            return self.client.get(f"{self.url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False
