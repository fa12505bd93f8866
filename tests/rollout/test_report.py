"""rollout/report.py: the HTML + PNG report of a rollout, built from the event log the real
Analysis loop writes (fake backend and given gate values, as in test_analysis)."""

from __future__ import annotations

import json
import re

from rollout import report
from rollout.analysis import Analysis
from rollout.analysis_config import AnalysisConfig
from rollout.event_log import EventLog
from testkit.rollout_runs import FakeBackend, FewRequests, run_to_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_promoted_rollout_report(tmp_path):
    log = run_to_log(tmp_path, 0.0)
    html_path, png_path = report.write_report(log.path)
    assert html_path == log.path.with_suffix(".html") and png_path == log.path.with_suffix(".png")
    assert png_path.read_bytes().startswith(PNG_MAGIC)
    page = html_path.read_text()
    assert 'data-decision="promoted"' in page and ">PROMOTED<" in page and "all steps passed" in page
    assert report.COLORS["promoted"] in page
    # every step with its split, request counts, each gate against its threshold, decision
    summary = report.summarize(log.read(), "x")
    assert [(s.challenger_percent, s.champion_percent) for s in summary.steps] == [(10, 90), (50, 50), (100, 0)]
    assert [s.decision for s in summary.steps] == ["advance", "advance", "promote"]
    assert all(s.challenger_requests == 500 for s in summary.steps)
    assert page.count("<tr>") == 1 + 3
    assert "≤ 1.00 %" in page and "≤ 500.0 ms" in page  # error-rate and p95 thresholds
    assert "10.0 ms" in page  # the p95 value read
    # self-contained: no fetch of anything (the chart is inlined)
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "data:image/png;base64," in page


def test_rolled_back_rollout_report_says_why(tmp_path):
    log = run_to_log(tmp_path, 0.3)
    html_path, _ = report.write_report(log.path)
    page = html_path.read_text()
    assert 'data-decision="rolled_back"' in page and ">ROLLED BACK<" in page
    assert "error_rate=0.3 &gt; 0.01" in page
    assert page.count("class='fail'") == 2  # the error-rate gate of both failed steps
    summary = report.summarize(log.read(), "x")
    assert [s.decision for s in summary.steps] == ["hold", "rollback"]


def test_report_of_a_run_still_writing(tmp_path):
    log = run_to_log(tmp_path, 0.0)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:3]) + '\n{"ts": 1, "event": "st')  # two steps and a torn line
    summary = report.summarize(report.read_events(log.path), "x")
    assert summary.decision == "in_progress" and len(summary.steps) == 2
    assert summary.reason == "step 2: advance"
    html_path, png_path = report.write_report(log.path)
    assert ">IN PROGRESS<" in html_path.read_text() and png_path.stat().st_size > 0


def test_report_without_steps(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"ts": 1.0, "event": "start", "champion": "1", "challenger": "2", "config": {}}) + "\n")
    html_path, png_path = report.write_report(path)
    assert "no step judged yet" in html_path.read_text()
    assert png_path.read_bytes().startswith(PNG_MAGIC)


def test_main(tmp_path, capsys):
    log = run_to_log(tmp_path, 0.0)
    assert report.main([str(log.path)]) == 0
    assert capsys.readouterr().out.split() == [str(p) for p in report.report_paths(log.path)]
    assert report.main([]) == 2
    assert report.main([str(tmp_path / "missing.jsonl")]) == 2


def test_report_shows_the_evidence_behind_each_gate(tmp_path):
    page = report.write_report(run_to_log(tmp_path, 0.0).path)[0].read_text()
    # the PSI and mean-shift cells carry their test: verdict, comparison, interval, p-value, counts
    assert page.count("within, marginal: [") == 2 * 3
    assert "p=" in page and "champion 5,000, challenger 5,000" in page


def test_inconclusive_rollout_report(tmp_path):
    cfg = AnalysisConfig(steps=[10, 100], interval=0, min_requests=10, settle=0)
    log = EventLog(tmp_path / "rollouts" / "housing-20260101T000000-abcdef.jsonl")
    Analysis(FakeBackend(), FewRequests(0.0), cfg, "1", "2", log, sleep=lambda s: None).run("s3://m/h/2")
    page = report.write_report(log.path)[0].read_text()
    assert 'data-decision="inconclusive"' in page and ">NOT ENOUGH EVIDENCE<" in page
    assert "nothing promoted or rolled back" in page and "only 4 challenger requests &lt; 10" in page
    assert [s.look for s in report.summarize(log.read(), "x").steps] == [1, 2, 3]


def _live_run(tmp_path, ratios):
    """The real Analysis loop with the live_rmse gate (as rollout.live_step makes it) giving ``ratios`` per
    look (None: waiting for labels, not required)."""
    from rollout.gates import GateResult
    from rollout.live_step import NAME
    from testkit.rollout_runs import GivenValues

    looks = iter(ratios)

    def live():
        ratio = next(looks)
        note = "waiting for labels: champion 3 < 20 labelled rows" if ratio is None else "within tolerance"
        return [GateResult(NAME, ratio, 1.02, True, note)]

    cfg = AnalysisConfig(steps=[10, 50, 100], interval=0, min_requests=10, max_failures=2, settle=0)
    log = EventLog(tmp_path / "rollouts" / "housing-20260101T000000-live00.jsonl")
    Analysis(FakeBackend(), GivenValues(0.0), cfg, "1", "2", log, sleep=lambda s: None, extra_gates=live).run(
        "s3://m/h/2"
    )
    return log


def test_report_draws_live_rmse_per_look_when_the_log_has_it(tmp_path):
    log = _live_run(tmp_path, [None, 0.97, 1.01])
    html_path, png_path = report.write_report(log.path)
    page = html_path.read_text()
    assert "live RMSE ÷ champion&#x27;s" in page  # its column
    assert "0.970×" in page and "1.010×" in page and "≤ 1.020×" in page
    assert "waiting for labels: champion 3 &lt; 20 labelled rows" in page  # the look without a value says why
    assert png_path.read_bytes().startswith(PNG_MAGIC)
    summary = report.summarize(log.read(), "x")
    assert "live_rmse" in report.chart_gates(summary)
    fig = report.figure(summary)
    (ax,) = [a for a in fig.axes if a.get_title() == "live RMSE ÷ champion's"]
    drawn = ax.collections[0].get_offsets().tolist()  # one point per look with a value, at its look
    assert drawn == [[1.0, 0.97], [2.0, 1.01]]
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_label() == "threshold"] == [1.02]
    assert any("1 look waiting for labels" in t.get_text() for t in ax.texts)


def test_report_without_the_live_gate_has_no_live_panel(tmp_path):
    summary = report.summarize(run_to_log(tmp_path, 0.0).read(), "x")
    assert "live_rmse" not in report.chart_gates(summary)
    assert not [a for a in report.figure(summary).axes if "live" in a.get_title()]
