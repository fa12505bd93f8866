"""Canary rollouts end to end: real predictor processes, the real router, a real Prometheus.

The champion is a boston linear bundle made by the real training code; challengers are that
bundle with its intercept shifted and re-written with bundle.manifest so that predictions
move by +0.2 % (a good challenger) or +50 % (a bad one). The MLflow registry is a
real embedded one (sqlite). Intervals are short (1 s scrape, 3 s steps).
"""

from __future__ import annotations

import collections
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
import yaml
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.config import ALIAS_CHAMPION, ALIAS_PREVIOUS  # noqa: E402
from predictor.client.v2_request import v2_body  # noqa: E402
from registry import lifecycle as registry  # noqa: E402
from rollout.analysis import Analysis  # noqa: E402
from rollout.analysis_config import AnalysisConfig  # noqa: E402
from rollout.backends.local import LocalBackend  # noqa: E402
from rollout.event_log import EventLog  # noqa: E402
from rollout.prom import Prometheus  # noqa: E402
from testkit.bundles import derive_bundle  # noqa: E402
from testkit.holdout import boston_rows  # noqa: E402
from testkit.poll import poll  # noqa: E402
from testkit.registry import register_pair  # noqa: E402
from testkit.servers import ServerProcess, find_tool  # noqa: E402

pytestmark = pytest.mark.integration
MODEL = "housing"
ROUTED = "housing_router_requests_total"


# -- helpers: derived bundles and a load generator ----------------------------------------------


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
    return register_pair(tracking, MODEL, champion, challenger)


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
    deployment.start(str(bundles["good"]), 0, shadow=1.0)  # the champion's requests answered by both
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
    passed = [s for s in steps if s["decision"] in ("advance", "promote")]
    assert all(s["queries"] and s["values"]["challenger.requests"] >= 30 for s in passed)
    # the mean shift was decided on the same rows: the router's paired counters, read through Prometheus
    shift = [next(g for g in s["gates"] if g["name"] == "mean_shift")["evidence"] for s in passed]
    assert all(e["comparison"] == "paired" and e["verdict"] == "within" for e in shift), shift
    assert all(abs(e["estimate"] - 0.002) < 0.001 and e["counts"]["pairs"] >= 20 for e in shift), shift
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
    # a look may wait for evidence first (too few requests yet); then the evidence fails it twice
    assert [s["decision"] for s in steps if s["decision"] != "wait"] == ["hold", "rollback"]
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


def test_prometheus_outage_holds_and_changes_nothing(deployment, bundles, rows, prometheus_factory, tmp_path, tracking):
    """Prometheus goes away after the first step: the run holds at the step it was on (saying why),
    looks again, and ends inconclusive — never promoted and never rolled back on missing data; the
    champion keeps serving and the challenger keeps its share."""
    client = register(tracking, bundles["champion"], bundles["good"])
    # paired answers (shadow) decide its first step within the short looks, so the outage hits step 2
    deployment.start(str(bundles["good"]), 0, shadow=1.0)
    prom = prometheus_factory(targets(deployment))
    run = analysis(deployment, prom.url, tmp_path, tracking)
    run.on_step = lambda progress: prom.stop() if progress["step"] == "2/3" else None
    messages: list[str] = []
    run.echo = messages.append
    with Load(deployment.url, MODEL, rows, threads=3) as load:
        outcome = run.run()
    assert outcome.decision == "inconclusive", outcome.reason
    steps = [e for e in EventLog(tmp_path / "events.jsonl").read() if e["event"] == "step"]
    blind = [s for s in steps if s["weights"]["challenger"] == 50]  # Prometheus stopped as this step began
    assert [s["decision"] for s in blind] == ["wait", "wait", "inconclusive"], [
        (s["weights"], s["decision"]) for s in steps
    ]
    assert all("prometheus" in " ".join(s["reasons"]).lower() for s in blind), [s["reasons"] for s in blind]
    assert [s["weights"]["challenger"] for s in steps if s["weights"]["challenger"] != 50] == [20] * (
        len(steps) - len(blind)
    )  # (a loaded machine may repeat the first step once)
    assert any("wait" in m and "rometheus" in m for m in messages), messages
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "1"  # nothing promoted
    assert registry.TAG_STATUS not in client.get_model_version(MODEL, "2").tags  # nor rejected
    assert deployment.status().challenger_percent == 50  # the split stays where the run stopped
    champion_answers = [code for code, _, role in load.results if role == "champion"]
    assert champion_answers and set(champion_answers) == {200}


class FileTraefik(ServerProcess):
    """The gateway: traefik (the node tier's binary, scripts/tools/traefik.sh) in front of the two
    predictors — its file provider weights them 50/50 — counting every request per service and code."""

    name = "traefik"

    def __init__(self, workdir: Path, champion: str, challenger: str) -> None:
        super().__init__(workdir)
        from common.net import free_port

        self.web = free_port()
        services = {"champion": champion, "challenger": challenger}
        config = {
            "http": {
                "routers": {"model": {"rule": "PathPrefix(`/`)", "entryPoints": ["web"], "service": "split"}},
                "services": {
                    "split": {"weighted": {"services": [{"name": n, "weight": 1} for n in services]}},
                    **{n: {"loadBalancer": {"servers": [{"url": f"http://{a}"}]}} for n, a in services.items()},
                },
            }
        }
        (workdir / "dynamic.yml").write_text(yaml.safe_dump(config))

    def command(self) -> list[str]:
        return [
            find_tool("traefik", "bash scripts/tools/traefik.sh"),
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            f"--entryPoints.web.address=127.0.0.1:{self.web}",
            f"--entryPoints.metrics.address=127.0.0.1:{self.port}",
            "--ping.entryPoint=metrics",
            "--metrics.prometheus.entryPoint=metrics",
            "--metrics.prometheus.addServicesLabels=true",
            f"--providers.file.filename={self.workdir / 'dynamic.yml'}",
        ]

    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping"

    def start(self, timeout: float = 90.0) -> None:
        """Start traefik and wait until its route is loaded: ``/ping`` answers before the file
        provider's configuration is, and until then every request is a 404 (seen under load)."""
        super().start(timeout)

        def routed() -> int:
            try:
                return httpx.get(f"{self.url}/v2/health/ready", timeout=2.0).status_code
            except httpx.HTTPError:
                return 0

        status = poll(routed, lambda code: code == 200, timeout=timeout)
        assert status == 200, f"traefik's route never answered 200 (last {status})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web}"


def test_a_gateway_down_mid_rollout_holds_and_never_promotes(
    deployment, bundles, rows, prometheus_factory, tmp_path, tracking
):
    """A real traefik in front of the champion's and the challenger's predictors, its per-service
    series scraped by a real Prometheus with the predictors'; the gates read both, as behind the
    chart's route. The gateway stops as step 2 begins while other clients still reach the
    predictors (here through the router): the predictors' series have requests, the gateway's none,
    so the step holds and the run ends inconclusive — neither promoted on the predictors' figures
    alone nor rolled back (it used to fail the step and roll back after max_failures)."""
    from common.series import REQUEST_DURATION, REQUESTS_TOTAL
    from rollout.analysis_config import GatewaySeries, MetricNames

    client = register(tracking, bundles["champion"], bundles["good"])
    deployment.start(str(bundles["good"]), 0, shadow=1.0)  # paired answers decide step 1 quickly
    state = deployment.load()
    gateway = FileTraefik(tmp_path / "traefik", state["champion"]["address"], state["challenger"]["address"])
    gateway.start()
    try:
        prom = prometheus_factory([*targets(deployment), f"127.0.0.1:{gateway.port}"])
        run = analysis(deployment, prom.url, tmp_path, tracking)
        run.cfg.metrics = MetricNames(
            requests=REQUESTS_TOTAL,
            latency=REQUEST_DURATION,
            gateway=GatewaySeries(services={"champion": "champion@file", "challenger": "challenger@file"}),
        )
        run.on_step = lambda progress: gateway.stop() if progress["step"] == "2/3" else None
        with Load(gateway.url, MODEL, rows, threads=1) as through_gateway, Load(deployment.url, MODEL, rows, threads=2):
            outcome = run.run()
    finally:
        gateway.stop()
    assert outcome.decision == "inconclusive", outcome.reason
    steps = [e for e in EventLog(tmp_path / "events.jsonl").read() if e["event"] == "step"]
    seen = [s for s in steps if s["weights"]["challenger"] == 20]
    assert seen[-1]["decision"] == "advance" and seen[-1]["values"]["challenger.gateway.requests"] > 0, seen[-1]
    blind = [s for s in steps if s["weights"]["challenger"] == 50]  # the gateway stopped as this step began
    assert [s["decision"] for s in blind] == ["wait", "wait", "inconclusive"], [
        (s["weights"], s["decision"]) for s in steps
    ]
    assert all("no data from the gateway" in " ".join(s["reasons"]) for s in blind), [s["reasons"] for s in blind]
    assert all(s["values"]["challenger.requests"] >= 30 for s in blind)  # the predictors did have requests
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "1"  # nothing promoted
    assert registry.TAG_STATUS not in client.get_model_version(MODEL, "2").tags  # nor rejected
    assert {code for code, _, _ in through_gateway.results[:20]} == {200}  # the gateway served before it stopped


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
        # 5 s looks: at the 100 % step the PSI compares with what the champion answered at 50 %; 3 s
        # looks at the ~40 req/s a loaded CI machine reaches left n_eff ≈ 80, too few to decide psi ≤ 0.25
        "--interval",
        "5",
        "--min-requests",
        "30",
        "--traffic",
        "60",
        "--shadow",  # the paired comparison decides the mean shift within these looks
        "1",
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
