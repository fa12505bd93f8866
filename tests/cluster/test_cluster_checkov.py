"""Security scan of the rendered chart: checkov, no failed check; skips justified in .checkov.yaml."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from .conftest import CHART, VALUE_SETS, run_helm, template_args

pytestmark = pytest.mark.cluster

CONFIG = CHART / ".checkov.yaml"


def test_every_skip_is_justified():
    text = CONFIG.read_text()
    skipped = re.findall(r"^\s*-\s*(CKV2?_K8S_\d+)\s*$", text, re.M)
    assert skipped, "no skip-check list"
    for check in skipped:
        assert re.search(rf"^# {check} \".+\": \S+", text, re.M), f"{check} skipped without a written justification"
    for template in (CHART / "templates").rglob("*.yaml"):
        for check, reason in re.findall(r"checkov\.io/skip\d+: (CKV2?_K8S_\d+)=(.*)", template.read_text()):
            assert len(reason.split()) >= 4, f"{template.name}: {check} skipped without a reason"


def test_checkov_rendered_chart_has_no_failed_check(helm_bin, checkov_bin, tmp_path):
    for name, sets in VALUE_SETS.items():
        result = run_helm(helm_bin, template_args(sets))
        assert result.returncode == 0, result.stderr
        (tmp_path / f"{name}.yaml").write_text(result.stdout)
    scan = subprocess.run(
        [str(checkov_bin), "-d", str(tmp_path), "--config-file", str(CONFIG), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert scan.returncode in (0, 1), scan.stderr[-2000:]
    reports = json.loads(scan.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed, passed, parsing_errors = [], 0, 0
    for report in reports:
        passed += report["summary"]["passed"]
        parsing_errors += report["summary"]["parsing_errors"]
        for check in report.get("results", {}).get("failed_checks", []):
            failed.append(f"{check['check_id']} {check['check_name']} -> {check['resource']} ({check['file_path']})")
    assert passed > 100, "checkov scanned (almost) nothing"
    assert parsing_errors == 0
    assert not failed, "checkov failures:\n" + "\n".join(failed)
    assert scan.returncode == 0
