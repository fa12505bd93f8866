"""``housing quality --serve PORT``: live accuracy as Prometheus gauges, for the dashboard and alerts.

A small exporter rather than the rollout runner: live accuracy matters between rollouts too (a
champion whose accuracy decays as the market moves), and labels arrive days after the requests,
long after a rollout has ended. Each scrape recomputes from the labelled rows, at most once per
``refresh`` seconds (reading the log is the costly part).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from common.series import LIVE_LABELLED_ROWS, LIVE_MAE, LIVE_MAPE, LIVE_R2, LIVE_RMSE, VERSION_LABEL
from monitor.quality import VersionQuality, quality
from monitor.store import Store


class QualityCollector:
    """A prometheus_client collector of :func:`monitor.quality.quality` over the last ``days`` days."""

    def __init__(self, log_uri: str, days: float, refresh: float = 60.0) -> None:
        self.log_uri, self.days, self.refresh = log_uri, days, refresh
        self._lock = threading.Lock()
        self._at = -refresh
        self._rows: list[VersionQuality] = []

    def rows(self) -> list[VersionQuality]:
        with self._lock:
            if time.monotonic() - self._at >= self.refresh:
                since = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.days) if self.days else None
                self._rows = quality(Store(self.log_uri), since)
                self._at = time.monotonic()
            return self._rows

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        families = {
            LIVE_RMSE: ("Live RMSE of the labelled requests in the window.", lambda q: q.rmse),
            LIVE_MAE: ("Live MAE of the labelled requests in the window.", lambda q: q.mae),
            LIVE_MAPE: ("Live MAPE (a fraction) of the labelled requests in the window.", lambda q: q.mape),
            LIVE_R2: ("Live R² of the labelled requests in the window.", lambda q: q.r2),
            LIVE_LABELLED_ROWS: ("Labelled requests in the window.", lambda q: q.count),
        }
        rows = self.rows()
        for name, (doc, value) in families.items():
            family = GaugeMetricFamily(name, doc, labels=[VERSION_LABEL])
            for q in rows:
                family.add_metric([q.model_version], float(value(q)))
            yield family


def serve(log_uri: str, days: float, port: int, refresh: float = 60.0, addr: str = "0.0.0.0") -> Any:  # noqa: S104
    """Start the exporter's HTTP server on ``port`` (a thread); returns (server, thread)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(QualityCollector(log_uri, days, refresh))
    return start_http_server(port, addr=addr, registry=registry)
