"""What the payload log costs: ``housing bench --mode payload``.

Two predictors serve the same ames XGBoost bundle, one without and one with
``--payload_log_uri`` (a local directory, every request logged: sample 1). In each round one wrk
per predictor sends one-row V1 (then V2) JSON requests to both *at the same time*: on a shared,
busy machine whatever else runs hits both alike, and the two share the cores, so the one that needs
more CPU per request answers fewer (taken in turns, rounds of one condition spread 4–9× with the
other tenants' load, and the CPU per request with them). The medians of the rounds' requests per
second and their ratio (on ÷ off) are reported, with each round's own ratio and its spread, the
server CPU per request and the rows the log wrote and dropped.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import loadgen, servers
from common.config import DEFAULT_MODEL_NAME

PROTOCOLS = ("v1", "v2")
#: The issue's bar: with logging at sample 1, one-row throughput ≥ this share of logging off.
TARGET_RATIO = 0.95


@dataclass
class PayloadCost:
    """Per protocol and condition (``off``/``on``): each round's requests/s and CPU ms per request."""

    seconds: float
    rounds: int
    connections: int
    rps: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cpu_ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    writer_us_per_row: dict[str, float] = field(default_factory=dict)  # in process, CPU, best of 5
    rows_written: float = 0.0
    rows_dropped: float = 0.0
    requests_on: int = 0

    def median(self, protocol: str, cond: str) -> float:
        return statistics.median(self.rps[protocol][cond])

    def ratio(self, protocol: str) -> float:
        """Median requests/s with the log on ÷ off."""
        return self.median(protocol, "on") / self.median(protocol, "off")

    def round_ratios(self, protocol: str) -> list[float]:
        """Each round's on ÷ off (the two ran at the same time, under the same load from the rest of the machine)."""
        rps = self.rps[protocol]
        return [on / off for on, off in zip(rps["on"], rps["off"], strict=True) if off > 0]

    def cpu_ratio(self, protocol: str) -> float:
        """Median server CPU per request, off ÷ on (what throughput on one busy core would scale by)."""
        cpu = self.cpu_ms[protocol]
        return statistics.median(cpu["off"]) / statistics.median(cpu["on"])

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "ratio": {p: self.ratio(p) for p in PROTOCOLS},
            "round_ratio_median": {p: statistics.median(self.round_ratios(p)) for p in PROTOCOLS},
            "cpu_ratio": {p: self.cpu_ratio(p) for p in PROTOCOLS},
        }


def _counter(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name + "{"))


def writer_cost(bundle_dir: Path, workdir: Path, n: int = 5000) -> dict[str, float]:
    """CPU µs per row (best of 5) of the request path's record, the writer's table and its Parquet
    encoding, in this process, for ``n`` one-row V1 requests of distinct holdout rows (each body parsed
    and kept as the V1 route does: :func:`predictor.observe.payload_log.keep_body`)."""
    import gc

    from bench.run import holdout_rows
    from predictor.observe.payload_log import PayloadConfig, drop_body, keep_body
    from predictor.observe.payload_rows import columns_to_table
    from predictor.transport.model import HousingModel

    def best(fn: Any) -> float:
        times = []
        for _ in range(5):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return min(times) / n * 1e6

    bodies = [orjson.dumps({"instances": [r]}) for r in holdout_rows(bundle_dir, n)]

    def requests(model: HousingModel) -> None:
        for body in bodies:
            document = orjson.loads(body)
            keep_body(document, body)
            model.predict(document, {}, {})
            drop_body(document)

    config = PayloadConfig(str(workdir / "writer-cost"), flush_seconds=3600, flush_rows=n, max_queue=5 * n + 1)
    on, off = HousingModel(DEFAULT_MODEL_NAME, bundle_dir, payload=config), HousingModel(DEFAULT_MODEL_NAME, bundle_dir)
    on.load()
    off.load()
    assert on.payload_log is not None
    gc.collect()
    gc.freeze()
    log = on.payload_log
    with log._lock:  # the writer waits: the queue is measured here, not written behind our back
        predict_off = best(lambda: requests(off))
        predict_on = best(lambda: requests(on))
        taken = log._take()
    assert taken is not None
    columns = [column[:n] for column in taken]
    table = columns_to_table(columns, log.layout, on.name, on.version)
    out: dict[str, float] = {
        "record": predict_on - predict_off,
        "table": best(lambda: columns_to_table(columns, log.layout, on.name, on.version)),
        "parquet": best(lambda: _encode(table)),
    }
    log.close()
    gc.unfreeze()
    return out


def _encode(table: Any) -> None:
    from predictor.observe.payload_log import encode

    encode(table)


def measure(bundle_dir: Path, workdir: Path, seconds: float, rounds: int, connections: int = 8) -> PayloadCost:
    """The rounds, off and on loaded together (see the module docstring)."""
    from bench.run import holdout_rows, v1_body, v2_columns

    name = DEFAULT_MODEL_NAME
    row = holdout_rows(bundle_dir, 1)[0]
    bodies = {"v1": v1_body(row), "v2": orjson.dumps(v2_columns([row]))}
    paths = {"v1": f"/v1/models/{name}:predict", "v2": f"/v2/models/{name}/infer"}
    log_dir = workdir / "payloads"
    off = servers.start_ours(bundle_dir, name, workdir, label="log-off")
    on = servers.start_ours(bundle_dir, name, workdir, ["--payload_log_uri", str(log_dir)], label="log-on")
    res = PayloadCost(seconds, rounds, connections)
    try:
        for server in (off, on):
            servers.wait_ready(server)
            for p in PROTOCOLS:  # warm both paths
                loadgen.run_wrk(server.http_url + paths[p], bodies[p], 1.0, connections)
        for _ in range(rounds):
            for p in PROTOCOLS:
                got: dict[str, tuple[loadgen.LoadResult, float]] = {}

                def load(cond: str, server: servers.Server, p: str = p, got: dict = got) -> None:
                    cpu0 = server.cpu_seconds()
                    result = loadgen.run_wrk(server.http_url + paths[p], bodies[p], seconds, connections)
                    got[cond] = (result, server.cpu_seconds() - cpu0)

                both = [threading.Thread(target=load, args=pair) for pair in (("off", off), ("on", on))]
                for t in both:
                    t.start()
                for t in both:
                    t.join()
                for cond in ("off", "on"):
                    result, cpu = got[cond]
                    res.rps.setdefault(p, {}).setdefault(cond, []).append(result.rps)
                    res.cpu_ms.setdefault(p, {}).setdefault(cond, []).append(cpu * 1e3 / max(result.requests, 1))
                res.requests_on += got["on"][0].requests
        time.sleep(0.5)
    finally:
        for server in (off, on):
            if server is on and on.proc.poll() is None:
                res.rows_dropped = _counter(on.http_url, "housing_payload_rows_dropped_total")
            server.stop()  # the log's last rows are written at exit
    import pyarrow.parquet as pq

    res.rows_written = sum(pq.read_metadata(f).num_rows for f in log_dir.rglob("*.parquet"))
    res.writer_us_per_row = writer_cost(bundle_dir, workdir)
    return res


def _rounds(res: PayloadCost, protocol: str, cond: str) -> str:
    return f"{protocol.upper()} {cond} " + ", ".join(f"{v:,.0f}" for v in res.rps[protocol][cond])


def markdown(res: PayloadCost) -> list[str]:
    """The section's lines."""
    lines = [
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, `housing bench --mode payload`: one-row requests, wrk with "
        f"{res.connections} connections per predictor, {res.rounds} rounds of {res.seconds:g} s per protocol with "
        "both predictors loaded at the same time (one process each, ames XGBoost); the payload log at sample 1 "
        "into a local directory.",
        "",
        "| protocol | off: req/s (median) | on: req/s (median) | on ÷ off (medians) | per round on ÷ off: median "
        "[min, max] | CPU ms/request off → on | CPU off ÷ on |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in PROTOCOLS:
        cpu = res.cpu_ms[p]
        ratios = res.round_ratios(p)
        lines.append(
            f"| {p.upper()} | {res.median(p, 'off'):,.0f} | {res.median(p, 'on'):,.0f} | **{res.ratio(p):.3f}** | "
            f"{statistics.median(ratios):.3f} [{min(ratios):.2f}, {max(ratios):.2f}] | "
            f"{statistics.median(cpu['off']):.3f} → {statistics.median(cpu['on']):.3f} | {res.cpu_ratio(p):.3f} |"
        )
    lines += [
        "",
        "Rounds (req/s): " + "; ".join(_rounds(res, p, c) for p in PROTOCOLS for c in ("off", "on")) + ".",
        f"The log wrote {res.rows_written:,.0f} rows for the {res.requests_on:,} requests answered with it on "
        f"(the warm-up's included), {res.rows_dropped:,.0f} dropped. The bar: on ÷ off ≥ {TARGET_RATIO}.",
        "",
        "In process (CPU µs per one-row V1 request, best of 5, distinct holdout rows): "
        + ", ".join(f"{k} {v:.1f}" for k, v in res.writer_us_per_row.items())
        + f" — {sum(res.writer_us_per_row.values()):.1f} µs in all (record: the request path's extra cost; table "
        "and parquet: the writer thread's).",
    ]
    return lines
