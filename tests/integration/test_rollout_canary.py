"""Canary rollouts end to end: real predictor processes, the real router, a real Prometheus.

The champion is a boston linear bundle made by the real training code; challengers are that
bundle with its intercept shifted and re-written with bundle.manifest so that predictions
move by +0.2 % (a good challenger) or +50 % (a bad one). The MLflow registry is a
real embedded one (sqlite). Intervals are short (1 s scrape, 3 s steps).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bundle import registry  # noqa: E402
from housing.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_PREVIOUS, TAG_BUNDLE_URI  # noqa: E402
from predictor.v2_request import v2_body  # noqa: E402
from rollout.analysis import Analysis  # noqa: E402
from rollout.analysis_config import AnalysisConfig  # noqa: E402
from rollout.backends.local import LocalBackend  # noqa: E402
from rollout.event_log import EventLog  # noqa: E402
from rollout.prom import Prometheus  # noqa: E402
from testkit.bundles import derive_bundle  # noqa: E402
from testkit.poll import poll  # noqa: E402

pytestmark = pytest.mark.integration
MODEL = "housing"
ROUTED = "housing_router_requests_total"


# -- helpers: derived bundles and a load generator ----------------------------------------------


def boston_rows(n: int = 200) -> list[dict]:
    from training.datasets import load_dataset

    ds = load_dataset("boston")
    frame = ds.frame.drop(columns=[ds.target]).head(n)
    return json.loads(frame.to_json(orient="records"))


class Load:
    """Background V1 traffic through ``url`` from a few threads; records every answer."""

    def __init__(self, url: str, model: str, rows: list[dict], threads: int = 3, pause: float = 0.002) -> None:
        self.url = f"{url}/v1/models/{model}:predict"
        self.rows = rows
        self.threads = threads
        self.pause = pause  # keeps the 2-core machine responsive (the predictors, Prometheus, pytest)
        self.stop_event = threading.Event()
        self.results: list[tuple[int, str | None, str | None]] = []  # (status, version, role)
        self.lock = threading.Lock()
        self.workers: list[threading.Thread] = []

    def _run(self, k: int) -> None:
        i = k
        with httpx.Client(timeout=10.0) as client:
            while not self.stop_event.is_set():
                row = self.rows[i % len(self.rows)]
                i += self.threads
                try:
                    r = client.post(self.url, json={"instances": [row]})
                    item = (r.status_code, r.headers.get("x-model-version"), r.headers.get("x-rollout-role"))
                except httpx.HTTPError as exc:
                    item = (599, None, str(exc))
                with self.lock:
                    self.results.append(item)
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> Load:
        for k in range(self.threads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.workers:
            t.join(timeout=15)


# -- fixtures and tests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from testkit.procs import train_bundle

    root = tmp_path_factory.mktemp("rollout-bundles")
    champion = train_bundle(tmp_path_factory.getbasetemp(), "boston", "linear")  # shared with other modules
    return {
        "champion": champion,
        "good": derive_bundle(champion, root / "good", relative_shift=0.002, version=f"good-{uuid.uuid4().hex[:6]}"),
        "bad": derive_bundle(champion, root / "bad", relative_shift=0.5, version=f"bad-{uuid.uuid4().hex[:6]}"),
    }


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return boston_rows(200)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOUSING_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture
def tracking(home: Path) -> str:
    """A real (embedded sqlite) MLflow registry: v1 = champion, v2 = challenger."""
    return f"sqlite:///{home / 'mlflow.db'}"


def register(tracking: str, champion: Path, challenger: Path) -> MlflowClient:
    client = MlflowClient(tracking_uri=tracking)
    client.create_registered_model(MODEL)
    for uri in (champion, challenger):
        client.create_model_version(MODEL, source=str(uri), tags={TAG_BUNDLE_URI: str(uri)})
    client.set_registered_model_alias(MODEL, ALIAS_CHAMPION, "1")
    client.set_registered_model_alias(MODEL, ALIAS_CHALLENGER, "2")
    return client


@pytest.fixture
def deployment(home: Path, bundles: dict[str, Path]):
    backend = LocalBackend(home, MODEL, "it")
    backend.up(str(bundles["champion"]))
    yield backend
    backend.down()


def analysis(backend, prom_url, tmp_path, tracking, **kw) -> Analysis:
    status = backend.status()
    cfg = AnalysisConfig(steps=kw.pop("steps", [20, 50, 100]), interval=3, min_requests=30, max_failures=2, settle=1.5)
    return Analysis(
        backend,
        Prometheus(prom_url),
        cfg,
        status.champion_version,
        status.challenger_version,
        EventLog(tmp_path / "events.jsonl"),
        on_promote=lambda: registry.promote(MODEL, "2", tracking_uri=tracking),
        on_rollback=lambda reason: registry.reject(MODEL, reason, "2", tracking_uri=tracking),
    )


def targets(backend: LocalBackend) -> list[str]:
    state = backend.load()
    return [state["router"]["address"]] + [state[r]["address"] for r in ("champion", "challenger") if state.get(r)]


def served_versions(url: str, rows: list[dict], n: int) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            r = client.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": [rows[i % len(rows)]]})
            seen[(r.status_code, r.headers.get("x-model-version"))] += 1
    return seen


def test_good_challenger_is_promoted(deployment, bundles, rows, prometheus_factory, tmp_path, tracking):
    client = register(tracking, bundles["champion"], bundles["good"])
    deployment.start(str(bundles["good"]), 0)
    prom = prometheus_factory(targets(deployment))
    with Load(deployment.url, MODEL, rows, threads=3) as load:
        outcome = analysis(deployment, prom.url, tmp_path, tracking).run()
    assert outcome.decision == "promoted", outcome.reason
    assert all(code == 200 for code, _, _ in load.results), collections.Counter(r[0] for r in load.results)
    good_version = deployment.status().champion_version
    assert good_version.startswith("good-")
    # 100 % of traffic is served by the promoted version
    seen = served_versions(deployment.url, rows, 200)
    assert seen == {(200, good_version): 200}
    # aliases moved in the real registry
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "2"
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_PREVIOUS).version) == "1"
    # every step is in the event log with its weights, queries, values and decision
    log = EventLog(tmp_path / "events.jsonl").read()
    steps = [e for e in log if e["event"] == "step"]
    # in order; a step may repeat when a loaded machine makes it miss min_requests or the p95 once
    walked = [s["weights"]["challenger"] for s in steps]
    assert [w for i, w in enumerate(walked) if i == 0 or w != walked[i - 1]] == [20, 50, 100], [
        (s["weights"], s["reasons"]) for s in steps
    ]
    assert sum(s["decision"] == "hold" for s in steps) < 2  # max_failures=2: one hold at most
    passed = [s for s in steps if s["decision"] != "hold"]
    assert all(s["queries"] and s["values"]["challenger.requests"] >= 30 for s in passed)
    assert log[-1]["event"] == "promote"


def test_shifted_challenger_is_rolled_back(deployment, bundles, rows, prometheus_factory, tmp_path, tracking):
    client = register(tracking, bundles["champion"], bundles["bad"])
    champion_version = deployment.status().champion_version
    deployment.start(str(bundles["bad"]), 0)
    prom = prometheus_factory(targets(deployment))
    with Load(deployment.url, MODEL, rows, threads=3) as load:
        outcome = analysis(deployment, prom.url, tmp_path, tracking).run()
    assert outcome.decision == "rolled_back"
    assert "mean_shift" in outcome.reason and "psi" in outcome.reason
    # never went past the first step
    steps = [e for e in EventLog(tmp_path / "events.jsonl").read() if e["event"] == "step"]
    assert {s["weights"]["challenger"] for s in steps} == {20}
    assert [s["decision"] for s in steps] == ["hold", "rollback"]
    # the champion served every one of its requests without error, before and after
    assert load.results and all(code == 200 for code, _, _ in load.results)
    assert served_versions(deployment.url, rows, 100) == {(200, champion_version): 100}
    # registry: champion untouched, challenger tagged rejected with the reason
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "1"
    mv = client.get_model_version(MODEL, "2")
    assert mv.tags[registry.TAG_STATUS] == "rejected" and "mean_shift" in mv.tags[registry.TAG_REASON]


def test_erroring_challenger_is_rolled_back(deployment, bundles, rows, prometheus_factory, tmp_path, tracking):
    register(tracking, bundles["champion"], bundles["good"])
    champion_version = deployment.status().champion_version
    deployment.start(str(bundles["good"]), 0)
    prom = prometheus_factory(targets(deployment))
    os.kill(deployment.load()["challenger"]["pid"], signal.SIGKILL)  # the challenger dies: 502s
    with Load(deployment.url, MODEL, rows, threads=3) as load:
        outcome = analysis(deployment, prom.url, tmp_path, tracking).run()
    assert outcome.decision == "rolled_back" and "error_rate" in outcome.reason
    champion_answers = [code for code, _, role in load.results if role == "champion"]
    assert len(champion_answers) > 100 and set(champion_answers) == {200}
    assert served_versions(deployment.url, rows, 100) == {(200, champion_version): 100}


def test_prometheus_outage_holds_never_promotes_and_rolls_back(
    deployment, bundles, rows, prometheus_factory, tmp_path, tracking
):
    """Prometheus goes away after the first step: the run holds (saying why), never promotes on
    missing data, and rolls back after max_failures steps without data; the champion keeps serving."""
    client = register(tracking, bundles["champion"], bundles["good"])
    deployment.start(str(bundles["good"]), 0)
    prom = prometheus_factory(targets(deployment))
    run = analysis(deployment, prom.url, tmp_path, tracking)
    run.on_step = lambda progress: prom.stop() if progress["step"] == "2/3" else None
    messages: list[str] = []
    run.echo = messages.append
    with Load(deployment.url, MODEL, rows, threads=3) as load:
        outcome = run.run()
    assert outcome.decision == "rolled_back", outcome.reason
    steps = [e for e in EventLog(tmp_path / "events.jsonl").read() if e["event"] == "step"]
    blind = [s for s in steps if s["weights"]["challenger"] == 50]  # Prometheus stopped as this step began
    assert blind and [s["decision"] for s in blind][-1] == "rollback", [(s["weights"], s["decision"]) for s in steps]
    assert {s["decision"] for s in blind} <= {"hold", "rollback"}  # held at the step it was on, never advanced
    assert all("prometheus" in " ".join(s["reasons"]).lower() for s in blind), [s["reasons"] for s in blind]
    assert [s["weights"]["challenger"] for s in steps if s["weights"]["challenger"] != 50] == [20] * (
        len(steps) - len(blind)
    )  # (a loaded machine may repeat the first step once)
    assert any("hold" in m and "rometheus" in m for m in messages), messages
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "1"  # nothing promoted
    champion_answers = [code for code, _, role in load.results if role == "champion"]
    assert champion_answers and set(champion_answers) == {200}


def test_observed_split_within_5_points(deployment, bundles, rows, prometheus_factory):
    deployment.start(str(bundles["good"]), 30)
    prom = prometheus_factory(targets(deployment))
    with Load(deployment.url, MODEL, rows, threads=3) as load:
        deadline = time.monotonic() + 60
        while len(load.results) < 1500 and time.monotonic() < deadline:
            time.sleep(0.2)
    results = list(load.results)
    assert len(results) >= 1000
    share = sum(1 for _, _, role in results if role == "challenger") / len(results) * 100
    print(f"\nobserved challenger share {share:.1f}% over {len(results)} requests (target 30%)")
    assert abs(share - 30) <= 5
    assert all(code == 200 for code, _, _ in results)
    # the router's per-version counters agree, and Prometheus sees them
    metrics = httpx.get(f"{deployment.url}/metrics").text
    status = deployment.status()
    assert f'model_version="{status.challenger_version}"' in metrics
    routed = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(ROUTED + "{"))
    by_version = poll(  # until Prometheus has scraped the router after the load stopped
        lambda: Prometheus(prom.url).by_label(f"sum by (model_version) ({ROUTED})", "model_version"),
        lambda seen: sum(seen.values()) >= routed,
    )
    assert set(by_version) == {status.champion_version, status.challenger_version}
    prom_share = by_version[status.challenger_version] / sum(by_version.values()) * 100
    assert abs(prom_share - 30) <= 5


def test_sticky_routing(deployment, bundles, rows):
    deployment.start(str(bundles["good"]), 50)
    deployment._router({"sticky": True})
    first: dict[str, str] = {}
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            for i in range(150):
                rid = f"user-{i}"
                r = client.post(
                    f"{deployment.url}/v1/models/{MODEL}:predict",
                    json={"instances": [rows[i % len(rows)]]},
                    headers={"x-request-id": rid},
                )
                assert r.status_code == 200
                assert first.setdefault(rid, r.headers["x-model-version"]) == r.headers["x-model-version"], rid
        # V2 body id (no header): the same id always lands on the same version
        for _rep in range(3):
            for i in range(50):
                rid = f"v2-{i}"
                r = client.post(f"{deployment.url}/v2/models/{MODEL}/infer", json=v2_body([rows[0]], request_id=rid))
                assert r.status_code == 200, r.text
                assert first.setdefault(rid, r.headers["x-model-version"]) == r.headers["x-model-version"], rid
    share = sum(1 for v in first.values() if v == deployment.status().challenger_version) / len(first)
    assert 0.3 < share < 0.7


def test_shadow_mirrors_without_answering(deployment, bundles, rows):
    champion_version = deployment.status().champion_version
    deployment.start(str(bundles["bad"]), 0, shadow=1.0)
    assert served_versions(deployment.url, rows, 150) == {(200, champion_version): 150}
    report = poll(  # the mirrored requests finish after the answers
        lambda: httpx.get(f"{deployment.url}/router/shadow").json(), lambda r: r["compared_predictions"] >= 150
    )
    assert report["mirrored_requests"] == 150 and report["compared_predictions"] == 150
    # the bad challenger's predictions are 50 % higher on average, on the very same requests
    assert report["challenger_mean"] / report["champion_mean"] == pytest.approx(1.5, abs=0.1)
    assert report["mean_abs_diff"] > 0.3 * report["champion_mean"]
    metrics = httpx.get(f"{deployment.url}/metrics").text
    assert 'housing_router_shadow_requests_total{outcome="compared"} 150.0' in metrics


def test_cli_run_end_to_end(home, bundles, tracking):
    """`housing rollout run` in the embedded mode: its own Prometheus, synthetic traffic, aliases moved."""
    client = register(tracking, bundles["champion"], bundles["good"])
    env = {**os.environ, "HOUSING_HOME": str(home), "MLFLOW_TRACKING_URI": tracking}
    cmd = [
        sys.executable,
        "-m",
        "rollout",
        "run",
        "--steps",
        "50,100",
        "--interval",
        "3",
        "--min-requests",
        "30",
        "--traffic",
        "60",
        "--name",
        "cli",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "promoted: all steps passed" in done.stdout
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "2"
    (log,) = (home / "rollouts").glob("cli-*.jsonl")
    assert log.with_suffix(".html").is_file() and log.with_suffix(".png").is_file()  # the report, next to the log
    assert f"report      {log.with_suffix('.html')}" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rollout", "run", "--steps", "50,10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "strictly increasing" in bad.stderr
