"""Router logic: weighted and sticky choice, state validation, prediction extraction, shadow stats."""

from __future__ import annotations

import json
import random

import pytest

from rollout.router import RouterState, ShadowStats, Upstream, body_request_id, choose, predictions_of, sticky_bucket


def state(weight=25, sticky=False):
    return RouterState(Upstream("http://a", "1"), Upstream("http://b", "2"), weight=weight, sticky=sticky)


def test_weighted_split_by_request():
    rnd = random.Random(0)
    s = state(25)
    picks = [choose(s, None, rnd.random()) for _ in range(20_000)]
    share = picks.count("challenger") / len(picks) * 100
    assert abs(share - 25) < 1.5


def test_edges():
    assert choose(state(0), "x", 0.0) == "champion"
    assert choose(state(100), "x", 0.99) == "challenger"
    s = state(50)
    s.challenger = None
    assert choose(s, None, 0.0) == "champion"


def test_sticky_is_stable_and_proportional():
    s = state(30, sticky=True)
    ids = [f"req-{i}" for i in range(5000)]
    first = [choose(s, i, random.random()) for i in ids]
    again = [choose(s, i, random.random()) for i in ids]
    assert first == again
    assert abs(first.count("challenger") / len(ids) * 100 - 30) < 3
    # raising the weight only moves ids champion → challenger, never back
    s.weight = 60
    later = [choose(s, i, 0.5) for i in ids]
    assert all(b == "challenger" for a, b in zip(first, later, strict=True) if a == "challenger")
    assert 0 <= sticky_bucket("abc") < 100


def test_state_update_validates():
    s = state()
    s.update({"weight": 50, "sticky": True, "shadow": 0.5})
    assert (s.weight, s.sticky, s.shadow) == (50, True, 0.5)
    for bad in ({"weight": 101}, {"weight": "5"}, {"shadow": 2}, {"champion": None}, {"challenger": {"url": 1}}):
        with pytest.raises(ValueError):
            state().update(bad)
    with pytest.raises(ValueError, match="need a challenger"):
        state().update({"challenger": None})


def test_body_request_id_and_predictions():
    assert body_request_id(b'{"id": "abc", "inputs": []}') == "abc"
    assert body_request_id(b'{"inputs": []}') is None
    assert body_request_id(b'not json "id"') is None
    assert predictions_of(json.dumps({"predictions": [1.5, 2]}).encode()) == [1.5, 2.0]
    v2 = {"outputs": [{"name": "predict", "datatype": "FP64", "shape": [2, 1], "data": [3.0, 4.0]}]}
    assert predictions_of(json.dumps(v2).encode()) == [3.0, 4.0]
    assert predictions_of(b'{"predictions": [[1, 2]]}') == [1.0, 2.0]
    assert predictions_of(b"oops") is None


def test_shadow_stats_report():
    stats = ShadowStats()
    stats.add([100.0, 200.0], [110.0, 200.0])
    report = stats.report()
    assert report["compared_predictions"] == 2
    assert report["mean_abs_diff"] == pytest.approx(5.0)
    assert report["max_abs_diff"] == pytest.approx(10.0)
    assert report["mean_rel_diff"] == pytest.approx(0.05)
    assert report["challenger_mean"] == pytest.approx(155.0)


def test_paired_counters_carry_the_signed_relative_differences():
    """The paired gate reads n, Σr⁺, Σr⁻ and Σr² (counters only grow, so the signed sum is split)."""
    from prometheus_client import generate_latest

    from rollout.router import Router

    router = Router(state())
    router.observe_pairs(Upstream("http://a", "1"), Upstream("http://b", "2"), [100.0, 200.0], [110.0, 190.0])
    text = generate_latest(router.registry).decode()
    labels = '{champion_version="1",model_version="2"}'
    assert f"housing_router_shadow_pairs_total{labels} 2.0" in text
    assert f"housing_router_shadow_rel_diff_up_total{labels} 0.1" in text
    assert f"housing_router_shadow_rel_diff_down_total{labels} 0.05" in text
    squares = next(
        line for line in text.splitlines() if line.startswith("housing_router_shadow_rel_diff_squares_total{")
    )
    assert float(squares.split()[-1]) == pytest.approx(0.01 + 0.0025)


@pytest.mark.parametrize("path", ["/router/state", "/router/shadow/reset"])
def test_router_controls_take_json_only(path):
    """A web page can POST a form or text/plain cross-origin without a preflight, not JSON (issue 22 item 14)."""
    from fastapi.testclient import TestClient

    from rollout.router import create_app

    state = RouterState(champion=Upstream("http://127.0.0.1:1", "1"), challenger=None, weight=0)
    with TestClient(create_app(state)) as client:
        for headers in ({"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}, {}):
            answer = client.post(path, content=b'{"weight": 50}', headers=headers)
            assert answer.status_code == 415 and "application/json" in answer.json()["error"]
        assert client.get("/router/state").json()["weight"] == 0
        assert client.post(path, json={}).status_code in (200, 400)
