"""``housing bench --mode soak``: hold 80 % of the measured maximum against one predictor.

1. Start ``python -m predictor`` on an ames bundle; measure its maximum one-row V1 req/s (wrk,
   closed loop) and the server CPU each such request took; warm the mix (REST, then gRPC) and
   weigh each kind the same way. A request of the mix costs ~2x a one-row one (bad batches are
   parsed, a gRPC call costs 3–4 REST ones), so the target is ``share`` of the server's CPU at the
   maximum: ``share * max / mix_cost`` req/s (``by_cpu``; ``share * max`` until 2026-12-07 asked
   ~150 % of what the process could serve).
2. For ``seconds``, hold that target with a mix of good and bad requests: REST from
   wrk (``wrk_soak.lua``: V1 and V2 rows, malformed JSON, wrong values, an oversized batch),
   paced per connection and re-paced every window toward the target; gRPC from a paced child
   process (:mod:`bench.soak_grpc`, every fifth request invalid).
3. Report per window the rate, p99 and statuses; any status other than 200 for a good request
   or the expected 4xx for a bad one is *unexpected*; and the server's RSS at the start (after
   a warm-up with the same mix) and at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import loadgen, servers
from common.config import DEFAULT_MODEL_NAME

console = Console(stderr=True)
SOAK_LUA = Path(__file__).with_name("wrk_soak.lua")
#: Statuses a bad request may get (malformed → 400, oversized batch → 413).
BAD_STATUSES = {400, 413}
MAX_BATCH = 100


@dataclass
class SoakConfig:
    """How long and how hard."""

    seconds: float = 600.0
    window: float = 30.0
    share: float = 0.8  # of the measured maximum
    connections: int = 8
    max_seconds: float = 10.0  # the maximum's measurement
    warmup_seconds: float = 5.0
    grpc_share: float = 0.1  # of the target rate, sent over gRPC
    #: True: ``share`` of the server's CPU at the one-row V1 maximum, spent on the mix (its requests are
    #: weighed by the server CPU each kind took in the warm-up); False: ``share`` of the one-row rate.
    by_cpu: bool = True


@dataclass
class SoakResult:
    """The soak's figures."""

    config: dict[str, Any]
    max_rps: float = 0.0
    target_rps: float = 0.0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # server CPU per request: one-row V1, mix REST, gRPC
    mix_cost: float = 1.0  # one request of the mix ÷ one one-row V1 request, in server CPU
    windows: list[dict[str, Any]] = field(default_factory=list)
    grpc: dict[str, Any] = field(default_factory=dict)
    rss_start_kb: int = 0
    rss_end_kb: int = 0
    unexpected: int = 0
    unexpected_detail: dict[str, int] = field(default_factory=dict)
    errors_counted: float = 0.0
    grpc_server: dict[str, float] = field(default_factory=dict)  # ModelInfer calls the server ended, by code
    loadavg: list[float] = field(default_factory=list)  # 1-min load average at start and end

    @property
    def rss_growth(self) -> float:
        return self.rss_end_kb / self.rss_start_kb - 1 if self.rss_start_kb else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rss_growth": self.rss_growth}


def soak_bundle(workdir: Path) -> Path:
    """An ames XGBoost bundle (fast training, no registry)."""
    from training.api import TrainConfig, run_training

    cfg = TrainConfig(
        dataset="ames", fast=True, register=False, bundle_root=str(workdir / "bundles"), candidates=("xgboost",)
    )
    return Path(run_training(cfg).bundle_dir)


def _mix(bundle_dir: Path, workdir: Path, model: str) -> tuple[list[dict[str, Any]], bytes, bytes]:
    """The REST mix (path, body file, kind) and the good/bad gRPC requests."""
    from bench.run import grpc_request, holdout_rows, v2_columns

    rows = holdout_rows(bundle_dir, 3)
    v1, v2 = f"/v1/models/{model}:predict", f"/v2/models/{model}/infer"
    bad_value = {**rows[1], "Gr Liv Area": "large"} if "Gr Liv Area" in rows[1] else {**rows[1], "__x": 1}
    bodies = [
        (v1, {"instances": [rows[0]]}, "good"),
        (v2, v2_columns([rows[1]]), "good"),
        (v1, {"instances": [rows[2]]}, "good"),
        (v2, v2_columns([rows[0]]), "good"),
        (v1, rows[1], "good"),
        (v1, {"instances": [rows[0]]}, "good"),
        (v2, v2_columns([rows[2]]), "good"),
        (v1, b"{not json", "bad"),
        (v2, {"inputs": "nope"}, "bad"),
        (v1, {"instances": [bad_value]}, "bad"),
        (v1, {"instances": [rows[0]] * (MAX_BATCH + 1)}, "bad"),
    ]
    mix = []
    for i, (path, body, kind) in enumerate(bodies):
        body_file = workdir / f"mix-{i}.json"
        body_file.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
        mix.append({"path": path, "body_file": str(body_file), "kind": kind})
    good = grpc_request(model, v2_columns([rows[0]]))
    bad_body = v2_columns([rows[0]])
    bad_body["inputs"] = bad_body["inputs"][1:]  # a required feature missing
    bad = grpc_request(model, bad_body)
    return mix, good, bad


def _wrk_mix(url: str, mix_file: Path, seconds: float, connections: int, delay_ms: float) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(SOAK_LUA), url],
        capture_output=True,
        text=True,
        env={**os.environ, "WRK_MIX": str(mix_file), "WRK_DELAY_MS": f"{delay_ms:.3f}"},
        check=True,
        timeout=seconds + 60,
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return json.loads(line.removeprefix("WRK_JSON "))


def _grpc_process(target: str, paths: dict[str, Path], rate: float, seconds: float, window: float) -> subprocess.Popen:
    """The paced gRPC load (:mod:`bench.soak_grpc`) as a child process; its JSON on stdout."""
    args = [target, str(paths["good"]), str(paths["bad"]), f"{rate:.3f}", str(seconds), str(window)]
    return subprocess.Popen(
        [sys.executable, "-m", "bench.soak_grpc", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def _grpc_load(target: str, paths: dict[str, Path], rate: float, seconds: float) -> dict[str, Any]:
    out, _ = _grpc_process(target, paths, rate, seconds, seconds).communicate(timeout=seconds + 60)
    return json.loads(out.strip().splitlines()[-1])


def run_soak(cfg: SoakConfig, workdir: Path, bundle_dir: Path | None = None) -> SoakResult:
    """Run the soak against a fresh predictor; the caller judges the result."""
    res = SoakResult(config=asdict(cfg))
    bundle_dir = bundle_dir or soak_bundle(workdir)
    model = DEFAULT_MODEL_NAME
    mix, good_pb, bad_pb = _mix(bundle_dir, workdir, model)
    mix_file = workdir / "mix.jsonl"
    mix_file.write_text("".join(json.dumps(m) + "\n" for m in mix))
    good_share = sum(m["kind"] == "good" for m in mix) / len(mix)
    server = servers.start_ours(bundle_dir, model, workdir, ["--max_batch_size", str(MAX_BATCH)])
    try:
        servers.wait_ready(server)
        url = server.http_url
        one_row = workdir / "mix-0.json"
        loadgen.run_wrk(f"{url}{mix[0]['path']}", one_row.read_bytes(), cfg.warmup_seconds, cfg.connections)
        cpu = server.cpu_seconds()
        v1_max = loadgen.run_wrk(f"{url}{mix[0]['path']}", one_row.read_bytes(), cfg.max_seconds, cfg.connections)
        res.max_rps = v1_max.rps
        res.cpu_ms = {"v1_one_row": (server.cpu_seconds() - cpu) * 1000 / max(1, v1_max.requests)}
        paths = {}
        for name, data in (("good", good_pb), ("bad", bad_pb)):
            paths[name] = workdir / f"grpc-{name}.pb"
            paths[name].write_bytes(data)
        # warm every path, and weigh what one request of the mix costs the server against the one-row V1
        # request the maximum was measured with (the mix's bad batches and gRPC calls cost more)
        guess = cfg.share * res.max_rps
        cpu = server.cpu_seconds()
        warm = _wrk_mix(url, mix_file, cfg.warmup_seconds, cfg.connections, cfg.connections / guess * 1000)
        res.cpu_ms["rest_mix"] = (server.cpu_seconds() - cpu) * 1000 / max(1, warm["requests"])
        cpu = server.cpu_seconds()
        warm_grpc = _grpc_load(server.grpc_target, paths, cfg.grpc_share * guess, cfg.warmup_seconds)
        res.cpu_ms["grpc_mix"] = (server.cpu_seconds() - cpu) * 1000 / max(1, warm_grpc["sent"])
        mix_cpu_ms = (1 - cfg.grpc_share) * res.cpu_ms["rest_mix"] + cfg.grpc_share * res.cpu_ms["grpc_mix"]
        res.mix_cost = mix_cpu_ms / res.cpu_ms["v1_one_row"] if res.cpu_ms["v1_one_row"] > 0 else 1.0
        if cfg.by_cpu:  # share of the server's CPU at the maximum, spent on the mix
            res.target_rps = cfg.share * res.max_rps / max(1.0, res.mix_cost)
        else:  # share of the one-row maximum's request rate, whatever the mix costs (before 2026-12-07)
            res.target_rps = cfg.share * res.max_rps
        grpc_rps = cfg.grpc_share * res.target_rps
        rest_rps = res.target_rps - grpc_rps
        console.log(
            f"soak: max {res.max_rps:,.0f} one-row V1 req/s, a mix request costs {res.mix_cost:.2f}x "
            f"({res.cpu_ms}) → target {res.target_rps:,.0f} ({grpc_rps:,.0f} over gRPC)"
        )
        delay_ms = max(0.0, cfg.connections / rest_rps * 1000 - 1.0)
        res.rss_start_kb = servers.rss_kb(server.proc.pid)
        res.loadavg.append(os.getloadavg()[0])
        grpc_proc = _grpc_process(server.grpc_target, paths, grpc_rps, cfg.seconds, cfg.window)
        try:
            began = time.monotonic()
            while (left := cfg.seconds - (time.monotonic() - began)) > 1:
                run = _wrk_mix(url, mix_file, min(cfg.window, left), cfg.connections, delay_ms)
                rps = run["requests"] / (run["duration_us"] / 1e6)
                statuses = {int(k): v for k, v in run["statuses"].items()}
                res.windows.append(
                    {
                        "t_s": round(time.monotonic() - began),
                        "rest_rps": rps,
                        "p50_ms": run["p50_us"] / 1000,
                        "p99_ms": run["p99_us"] / 1000,
                        "statuses": statuses,
                        "socket_errors": run["errors"],
                    }  # fmt: skip
                )
                console.log(f"soak: window {len(res.windows)}: {rps:,.0f} req/s, p99 {run['p99_us'] / 1000:.1f} ms")
                if rps > 0:  # closed loop: each connection sends one request per (delay + latency)
                    latency_ms = cfg.connections / rps * 1000 - delay_ms
                    delay_ms = max(0.0, cfg.connections / rest_rps * 1000 - latency_ms)
            out, _ = grpc_proc.communicate(timeout=cfg.window + 120)
        finally:
            if grpc_proc.poll() is None:
                grpc_proc.kill()
                grpc_proc.wait()
        res.grpc = json.loads(out.strip().splitlines()[-1])
        res.rss_end_kb = servers.rss_kb(server.proc.pid)
        res.loadavg.append(os.getloadavg()[0])
        res.errors_counted, res.grpc_server = _server_counts(url)
    finally:
        server.stop()
    _judge(res, good_share)
    return res


def _server_counts(url: str) -> tuple[float, dict[str, float]]:
    """Client errors the server counted, and its ModelInfer calls by the code they ended with (the server's
    side of the gRPC figures: a call the client gave up on before the server took it is not there)."""
    import httpx

    from common.series import REQUEST_ERRORS_TOTAL, REQUESTS_TOTAL

    text = httpx.get(f"{url}/metrics", timeout=30).text
    errors = sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(REQUEST_ERRORS_TOTAL + "{"))
    grpc_codes: Counter[str] = Counter()
    for ln in text.splitlines():
        if ln.startswith(REQUESTS_TOTAL + "{") and 'protocol="grpc"' in ln:
            code = ln.split('code="', 1)[1].split('"', 1)[0]
            grpc_codes[code] += float(ln.rsplit(" ", 1)[1])
    return errors, dict(grpc_codes)


def _judge(res: SoakResult, good_share: float) -> None:
    """Count unexpected outcomes: statuses outside 200/400/413, socket errors, wrong gRPC codes,
    and more non-200 answers than bad requests were sent (each window sends the mix in order)."""
    detail: Counter[str] = Counter()
    for w in res.windows:
        total = sum(w["statuses"].values())
        for status, count in w["statuses"].items():
            if status != 200 and status not in BAD_STATUSES:
                detail[f"rest {status}"] += count
        bad_answers = sum(c for s, c in w["statuses"].items() if s in BAD_STATUSES)
        allowed = round(total * (1 - good_share)) + res.config["connections"]
        if bad_answers > allowed:
            detail["rest good request refused"] += bad_answers - allowed
        if w["socket_errors"]:
            detail["rest socket errors"] += w["socket_errors"]
    for kind, want in (("good", "OK"), ("bad", "INVALID_ARGUMENT")):
        for code, count in res.grpc.get("by_kind", {}).get(kind, {}).items():
            if code != want:
                detail[f"grpc {kind} {code}"] += count
    res.unexpected_detail = dict(detail)
    res.unexpected = sum(detail.values())


def markdown(res: SoakResult) -> list[str]:
    """The soak section of docs/benchmarks.md."""
    cfg = res.config
    sent = sum(sum(w["statuses"].values()) for w in res.windows) + res.grpc.get("sent", 0)
    lines = [
        f"Soak ({time.strftime('%Y-%m-%d', time.gmtime())}, `housing bench --mode soak`): one predictor "
        "(ames XGBoost), "
        f"maximum {res.max_rps:,.0f} one-row V1 req/s (wrk, {cfg['connections']} connections), then "
        + (
            f"{cfg['share']:.0%} of the server's CPU at that maximum spent on the mix (a mix request cost "
            f"{res.mix_cost:.2f}x a one-row V1 request in server CPU: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in res.cpu_ms.items())
            + f"; {res.target_rps:,.0f} req/s, {cfg['grpc_share']:.0%} over gRPC) for "
            if cfg.get("by_cpu")
            else f"{cfg['share']:.0%} of it ({res.target_rps:,.0f} req/s, {cfg['grpc_share']:.0%} over gRPC) for "
        )
        + f"{cfg['seconds']:g} s with a mix of good and bad requests (V1, V2, gRPC; 4 of 11 REST and 1 of 5 gRPC "
        f"requests malformed or too large): {sent:,} requests, **{res.unexpected} unexpected statuses**, "
        f"RSS {res.rss_start_kb / 1024:,.1f} MiB at the start → {res.rss_end_kb / 1024:,.1f} MiB at the end "
        f"(**{res.rss_growth:+.1%}**; goal ≤ 5 %), {res.errors_counted:,.0f} client errors counted in "
        "`housing_request_errors_total`."
        + (
            f" Machine load average {res.loadavg[0]:.1f} at the start, {res.loadavg[-1]:.1f} at the end "
            f"({os.cpu_count()} cores shared with other jobs)."
            if res.loadavg
            else ""
        ),
        "",
        "| t (s) | REST req/s | REST p50 ms | REST p99 ms | gRPC p99 ms | REST statuses |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    grpc_windows = res.grpc.get("windows", [])
    for i, w in enumerate(res.windows):
        g = grpc_windows[i]["p99_ms"] if i < len(grpc_windows) else float("nan")
        statuses = ", ".join(f"{s}: {c:,}" for s, c in sorted(w["statuses"].items()))
        lines.append(
            f"| {w['t_s']} | {w['rest_rps']:,.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | {g:.2f} | {statuses} |"
        )
    if res.unexpected_detail:
        lines += ["", "Unexpected: " + ", ".join(f"{k}: {v}" for k, v in res.unexpected_detail.items())]
    lag = [w.get("loop_lag_max_ms", float("nan")) for w in grpc_windows]
    if lag:
        lines += [
            "",
            f"gRPC client: worst window's own event-loop lag {max(lag):.1f} ms, worst p99 of calls leaving late "
            f"{max(w.get('send_lag_p99_ms', float('nan')) for w in grpc_windows):.1f} ms (the client kept up); "
            "ModelInfer calls the server ended, by status: "
            + (", ".join(f"{c}: {n:,.0f}" for c, n in sorted(res.grpc_server.items())) or "none counted"),
        ]
    return lines


def p99_spread(res: SoakResult) -> tuple[float, float]:
    """Median and worst window p99 (ms) of the REST load."""
    p99 = [w["p99_ms"] for w in res.windows]
    return statistics.median(p99), max(p99)


def main() -> None:  # pragma: no cover - thin wrapper
    """``python -m bench.soak [SECONDS]``: print the result as JSON."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    with tempfile.TemporaryDirectory(prefix="housing-soak-") as tmp:
        res = run_soak(SoakConfig(seconds=seconds, window=min(30.0, seconds / 4)), Path(tmp))
    print(json.dumps(res.to_dict(), indent=2, default=float))


if __name__ == "__main__":
    main()
