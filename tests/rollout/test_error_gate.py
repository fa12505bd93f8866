"""The error gate's one definition: failed requests ÷ requests, for the router, the predictor and the gateway."""

from __future__ import annotations

import pytest

from common.series import REQUESTS_TOTAL
from rollout.analysis_config import GatewaySeries, MetricNames
from rollout.error_gate import error_rate, judge, read_gateway
from rollout.gateway_series import GATEWAY_REQUESTS_TOTAL, service_regex
from rollout.orchestrator import cluster_metrics
from rollout.promql import build_queries, error_rate_query, gateway_queries
from rollout.router_series import ROUTER_REQUESTS_TOTAL


def test_error_rate_is_failed_requests_over_requests():
    assert error_rate({"200": 97, "500": 2, "503": 1}) == pytest.approx(0.03)
    assert error_rate({200: 10, 400: 10}) == 0.0  # a client's mistake is not the challenger's failure
    assert error_rate({}) is None and error_rate({"200": 0}) is None  # no requests: no evidence


def test_router_and_cluster_gates_are_the_same_query_over_their_own_series():
    """The local router's series and the predictor's are judged by the same PromQL, only the names differ."""
    router = build_queries(MetricNames(), "7", "15s")["error_rate"]
    cluster = build_queries(cluster_metrics(), "7", "15s")["error_rate"]
    assert router == error_rate_query(
        ROUTER_REQUESTS_TOTAL, '{model_version="7"}', '{model_version="7",code=~"5.."}', "15s"
    )
    assert cluster == router.replace(ROUTER_REQUESTS_TOTAL, REQUESTS_TOTAL)
    assert "housing_predictions_total" not in cluster  # requests, not rows
    assert "housing_request_errors_total" not in cluster  # every failure, not client errors


def test_gateway_series_count_against_the_service_behind_each_backend():
    regex = service_regex("canary", "housing-v3-predictor")
    metrics = MetricNames(gateway=GatewaySeries(services={"challenger": regex}))
    q = gateway_queries(metrics, "challenger", "20s")
    backend = f'service=~"{regex}",protocol=~"http|websocket|sse"'
    assert q["gateway.error_rate"] == error_rate_query(
        GATEWAY_REQUESTS_TOTAL, f"{{{backend}}}", f'{{{backend},code=~"5.."}}', "20s"
    )
    # gRPC calls are left out: traefik v3.6 labels an answered call and an undelivered one alike (code="2")
    assert all('protocol=~"http|websocket|sse"' in q[k] for k in ("gateway.requests", "gateway.p95_latency"))
    assert "traefik_service_request_duration_seconds_bucket" in q["gateway.p95_latency"]
    assert gateway_queries(metrics, "champion", "20s") == {}  # no Service known for that role: no query
    # traefik's names of a backendRef (pkg/provider/kubernetes/gateway): HTTPRoute and GRPCRoute
    import re

    assert re.fullmatch(regex, "canary-housing-v3-predictor-http-80@kubernetesgateway")
    assert re.fullmatch(regex, "canary-housing-v3-predictor-8081-grpc@kubernetesgateway")
    assert not re.fullmatch(regex, "canary-housing-predictor-http-80@kubernetesgateway")
    assert not re.fullmatch(regex, "canary-housing-v3-predictor-http-80-wrr@kubernetesgateway")
    # PromQL's string literals know no "\-" (Prometheus refused the whole query): no backslash at all
    assert "\\" not in q["gateway.error_rate"] and "\\" not in regex
    with pytest.raises(ValueError, match="not a Kubernetes name"):
        service_regex("canary", "housing.v3")


class Answers:
    def __init__(self, values: dict[str, float | None]) -> None:
        self.values = values

    def scalar(self, q: str) -> float | None:
        for key, value in self.values.items():
            if q.startswith(key):
                return value
        return None


def test_the_gate_judges_the_worst_of_the_gateway_and_the_predictor():
    metrics = MetricNames(gateway=GatewaySeries(services={"challenger": "c", "champion": "p"}))
    prom = Answers({"sum(increase(traefik": 100.0, "(sum(rate(traefik": 0.2, "histogram_quantile": 0.3})
    values, queries = read_gateway(prom, metrics, "10s", "60s")  # type: ignore[arg-type]
    assert set(queries) == {
        f"{r}.gateway.{k}" for r in ("challenger", "champion") for k in ("requests", "error_rate", "p95_latency")
    }
    values.update({"challenger.error_rate": 0.0, "challenger.p95_latency": 0.01})
    judge(values, gateway=True)
    # the predictors answered everything they got; the gateway saw 20 % refused or timed out
    assert values["error_rate"] == 0.2 and values["p95_latency"] == 0.3
    values = {"challenger.error_rate": 0.05, "challenger.gateway.error_rate": 0.0, "challenger.gateway.requests": 9.0}
    judge(values, gateway=True)
    assert values["error_rate"] == 0.05  # a 500 the gateway passed on counts once, the worst figure


def test_missing_gateway_data_holds_the_step():
    values = {"challenger.error_rate": 0.0, "challenger.gateway.error_rate": None, "challenger.gateway.requests": None}
    judge(values, gateway=True)
    assert values["error_rate"] is None  # the gate then fails with "no data": hold, never promote blind
    values = {"challenger.error_rate": 0.0, "challenger.p95_latency": 0.1}
    judge(values, gateway=False)
    assert values["error_rate"] == 0.0 and values["p95_latency"] == 0.1
